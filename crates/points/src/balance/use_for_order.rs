//! Paying an order with points (final: a paid order cannot be cancelled).

use chrono::Utc;
use db::{on_tx, sqlx, Tx};

use super::{lock_balance, order_entry, record, Kind, PointsError};

/// Takes `amount` from `user_id` for `order_id`; returns the balance after. Idempotent per
/// order: a second call returns the first one's balance and takes nothing. `Insufficient` (and
/// nothing taken) when the balance is short. An amount of 0 records nothing.
pub async fn use_for_order(
    tx: &mut Tx,
    user_id: i64,
    order_id: i64,
    amount: i64,
) -> Result<i64, PointsError> {
    let balance = lock_balance(tx, user_id).await?;
    if let Some((_, balance_after)) = order_entry(tx, order_id, Kind::Use).await? {
        return Ok(balance_after);
    }
    if amount <= 0 {
        return Ok(balance);
    }
    let now = Utc::now();
    let after: Option<i64> = on_tx!(tx, c => sqlx::query_scalar(
        "UPDATE point_balances SET balance = balance - $2, updated_at = $3 \
         WHERE user_id = $1 AND balance >= $2 RETURNING balance",
    )
    .bind(user_id)
    .bind(amount)
    .bind(now)
    .fetch_optional(c)
    .await)?;
    let Some(after) = after else {
        return Err(PointsError::Insufficient {
            balance,
            needed: amount,
        });
    };
    record(tx, user_id, Kind::Use, amount, after, Some(order_id), now).await?;
    Ok(after)
}
