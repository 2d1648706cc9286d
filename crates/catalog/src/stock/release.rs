//! Releasing an order's stock (the undo of `reserve.rs`).

use chrono::Utc;
use db::{exec, on_tx, sqlx, Tx};

use crate::Catalog;

/// Gives back, in `tx`, the stock `order_id` holds; returns the units released. At most once:
/// the reservations are claimed with one conditional `UPDATE … WHERE released_at IS NULL`, so a
/// second or concurrent release (or one for an order that reserved nothing) releases nothing.
/// The order is closed first (its `order_stock` row, which a concurrent reserve also writes,
/// so the two serialize): a reserve that comes later is refused.
pub async fn release(catalog: &Catalog, tx: &mut Tx, order_id: i64) -> sqlx::Result<i64> {
    exec!(
        tx,
        "INSERT INTO order_stock (order_id, state) VALUES ($1, 'RELEASED') \
         ON CONFLICT (order_id) DO UPDATE SET state = 'RELEASED'",
        order_id
    )?;
    let claimed: Vec<(i64, i64)> = on_tx!(tx, c => sqlx::query_as(
        "UPDATE stock_reservations SET released_at = $2 WHERE order_id = $1 AND released_at IS NULL \
         RETURNING option_id, quantity",
    )
    .bind(order_id)
    .bind(Utc::now())
    .fetch_all(c)
    .await)?;
    let mut products = Vec::new();
    for (option, quantity) in &claimed {
        let product: i64 = on_tx!(tx, c => sqlx::query_scalar(
            "UPDATE product_options SET stock = stock + $2 WHERE id = $1 RETURNING product_id",
        )
        .bind(option)
        .bind(quantity)
        .fetch_one(c)
        .await)?;
        products.push(product);
    }
    products.sort_unstable();
    products.dedup();
    catalog.forget_after_commit(tx, products);
    Ok(claimed.iter().map(|(_, q)| q).sum())
}
