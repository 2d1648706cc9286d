//! Reserving an order's stock (undone by `release.rs`).

use chrono::Utc;
use db::{exec, on_tx, sqlx, Tx};

use super::{Line, Reserved};
use crate::Catalog;

/// Why an order's stock could not be reserved.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("option {0} has not enough stock")]
    OutOfStock(i64),
    #[error("option {0} does not exist")]
    UnknownOption(i64),
    /// An earlier reserve for this order failed (and took nothing).
    #[error("an earlier reserve for this order failed")]
    AlreadyFailed,
    /// The order's stock was released (it was cancelled or expired) before it was reserved.
    #[error("the order is closed")]
    Closed,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ReserveError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unknown(e.into())
    }
}

/// Reserves every line of `order_id` in `tx`, all or nothing: each line is one conditional
/// `UPDATE … WHERE stock >= quantity`, and the first that fails undoes the others (savepoint).
/// Options are locked in id order, so concurrent orders cannot deadlock. Idempotent per
/// order: reserving again returns what the order already holds (or `AlreadyFailed`) and takes
/// nothing; after [`release`](super::release) it is refused with `Closed`.
pub async fn reserve(
    catalog: &Catalog,
    tx: &mut Tx,
    order_id: i64,
    lines: &[Line],
) -> Result<Vec<Reserved>, ReserveError> {
    let started = exec!(
        tx,
        "INSERT INTO order_stock (order_id, state) VALUES ($1, 'RESERVED') ON CONFLICT DO NOTHING",
        order_id
    )?;
    if started == 0 {
        let state: String = on_tx!(tx, c => sqlx::query_scalar(
            "SELECT state FROM order_stock WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_one(c)
        .await)?;
        return match state.as_str() {
            "RESERVED" => Ok(reserved(tx, order_id).await?),
            "FAILED" => Err(ReserveError::AlreadyFailed),
            _ => Err(ReserveError::Closed),
        };
    }
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.product_option_id);
    tx.execute_raw("SAVEPOINT catalog_reserve").await?;
    if let Err(error) = take(tx, order_id, &lines).await {
        tx.execute_raw("ROLLBACK TO SAVEPOINT catalog_reserve")
            .await?;
        tx.execute_raw("RELEASE SAVEPOINT catalog_reserve").await?;
        exec!(
            tx,
            "UPDATE order_stock SET state = 'FAILED' WHERE order_id = $1",
            order_id
        )?;
        return Err(error);
    }
    tx.execute_raw("RELEASE SAVEPOINT catalog_reserve").await?;
    let reserved = reserved(tx, order_id).await?;
    let mut products: Vec<i64> = reserved.iter().map(|r| r.product_id).collect();
    products.sort_unstable();
    products.dedup();
    catalog.forget_after_commit(tx, products);
    Ok(reserved)
}

async fn take(tx: &mut Tx, order_id: i64, lines: &[Line]) -> Result<(), ReserveError> {
    let now = Utc::now();
    for line in lines {
        let price: Option<i64> = on_tx!(tx, c => sqlx::query_scalar(
            "UPDATE product_options SET stock = stock - $2 WHERE id = $1 AND stock >= $2 RETURNING price",
        )
        .bind(line.product_option_id)
        .bind(line.quantity)
        .fetch_optional(c)
        .await)?;
        let Some(price) = price else {
            let exists: Option<i64> = on_tx!(tx, c => sqlx::query_scalar("SELECT id FROM product_options WHERE id = $1")
                .bind(line.product_option_id)
                .fetch_optional(c)
                .await)?;
            return Err(match exists {
                Some(_) => ReserveError::OutOfStock(line.product_option_id),
                None => ReserveError::UnknownOption(line.product_option_id),
            });
        };
        exec!(
            tx,
            "INSERT INTO stock_reservations (order_id, option_id, quantity, unit_price, reserved_at) \
             VALUES ($1, $2, $3, $4, $5)",
            order_id,
            line.product_option_id,
            line.quantity,
            price,
            now
        )?;
    }
    Ok(())
}

/// A reservation with what a priced line shows.
#[derive(sqlx::FromRow)]
struct ReservedRow {
    option_id: i64,
    product_id: i64,
    product_name: String,
    option_name: String,
    unit_price: i64,
    quantity: i64,
}

/// What `order_id` holds (released or not), by option id.
async fn reserved(tx: &mut Tx, order_id: i64) -> sqlx::Result<Vec<Reserved>> {
    let rows: Vec<ReservedRow> = on_tx!(tx, c => sqlx::query_as(
        "SELECT r.option_id, o.product_id, p.name AS product_name, o.name AS option_name, \
         r.unit_price, r.quantity \
         FROM stock_reservations r JOIN product_options o ON o.id = r.option_id \
         JOIN products p ON p.id = o.product_id WHERE r.order_id = $1 ORDER BY r.option_id",
    )
    .bind(order_id)
    .fetch_all(c)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|row| Reserved {
            product_option_id: row.option_id,
            product_id: row.product_id,
            product_name: row.product_name,
            option_name: row.option_name,
            unit_price: row.unit_price,
            quantity: row.quantity,
        })
        .collect())
}
