//! Paid order lines by payment time: what the ranking rebuilds its counts from (a read-only
//! query for other contexts; sales count only once paid).

use chrono::{DateTime, Utc};
use db::{on_db, sqlx, Db};

/// Units of one order line, paid at `paid_at`; `(order_id, product_option_id)` names it, as
/// `product-sold` does.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Sale {
    pub order_id: i64,
    pub product_option_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub paid_at: DateTime<Utc>,
}

/// Where the next page of [`paid_since`] starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor(Option<i64>);

/// A page of the lines of orders paid at or after `since`: the lines of the next `orders`
/// payments from `cursor` (start with `Cursor::default()`), in payment order, and the cursor
/// of the page after it; `None` when there is none.
pub async fn paid_since(
    db: &Db,
    since: DateTime<Utc>,
    cursor: Cursor,
    orders: i64,
) -> anyhow::Result<(Vec<Sale>, Option<Cursor>)> {
    // Payment ids rise with time but not strictly: start below the first one in the window,
    // then page by id with the time filter.
    let after = match cursor.0 {
        Some(after) => after,
        None => {
            let first: Option<i64> = on_db!(db, c => sqlx::query_scalar(
                "SELECT MIN(id) FROM payments WHERE paid_at >= $1",
            )
            .bind(since)
            .fetch_one(c)
            .await)?;
            match first {
                Some(id) => id - 1,
                None => return Ok((Vec::new(), None)),
            }
        }
    };
    /// A sale and the payment it was read from.
    #[derive(sqlx::FromRow)]
    struct Row {
        payment_id: i64,
        #[sqlx(flatten)]
        sale: Sale,
    }
    let rows: Vec<Row> = on_db!(db, c => sqlx::query_as(
        "SELECT p.id AS payment_id, p.order_id, i.product_option_id, i.product_id, i.quantity, \
         p.paid_at \
         FROM (SELECT id, order_id, paid_at FROM payments WHERE id > $1 AND paid_at >= $2 \
               ORDER BY id LIMIT $3) p \
         JOIN order_items i ON i.order_id = p.order_id \
         ORDER BY p.id, i.product_option_id",
    )
    .bind(after)
    .bind(since)
    .bind(orders)
    .fetch_all(c)
    .await)?;
    let next = rows.last().map(|r| Cursor(Some(r.payment_id)));
    let sales = rows.into_iter().map(|row| row.sale).collect();
    Ok((sales, next))
}
