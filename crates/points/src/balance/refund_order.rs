//! Giving back the points an order used (the undo of `use_for_order`).

use chrono::Utc;
use db::{on_tx, sqlx, Tx};

use super::{lock_balance, order_entry, record, Kind, PointsError};

/// Returns to `user_id` what `order_id` used; returns the balance after, or `None` when the
/// order used no points. Idempotent per order: refunds at most once.
pub async fn refund_order(
    tx: &mut Tx,
    user_id: i64,
    order_id: i64,
) -> Result<Option<i64>, PointsError> {
    lock_balance(tx, user_id).await?;
    if let Some((_, balance_after)) = order_entry(tx, order_id, Kind::Refund).await? {
        return Ok(Some(balance_after));
    }
    let Some((amount, _)) = order_entry(tx, order_id, Kind::Use).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    let after: i64 = on_tx!(tx, c => sqlx::query_scalar(
        "UPDATE point_balances SET balance = balance + $2, updated_at = $3 WHERE user_id = $1 \
         RETURNING balance",
    )
    .bind(user_id)
    .bind(amount)
    .bind(now)
    .fetch_one(c)
    .await)?;
    record(
        tx,
        user_id,
        Kind::Refund,
        amount,
        after,
        Some(order_id),
        now,
    )
    .await?;
    Ok(Some(after))
}
