//! Charging points.

use chrono::Utc;
use db::{on_tx, sqlx, Tx};

use super::{record, Kind, PointsError};

/// Smallest charge, in KRW.
pub const MIN_CHARGE: i64 = 10_000;
/// Largest charge, in KRW.
pub const MAX_CHARGE: i64 = 1_000_000;

/// Adds `amount` to the balance of `user_id` in one atomic upsert and records it; returns the
/// new balance. `InvalidChargeAmount` outside 10,000–1,000,000.
pub async fn charge(tx: &mut Tx, user_id: i64, amount: i64) -> Result<i64, PointsError> {
    if !(MIN_CHARGE..=MAX_CHARGE).contains(&amount) {
        return Err(PointsError::InvalidChargeAmount);
    }
    let now = Utc::now();
    let balance: i64 = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO point_balances (user_id, balance, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE \
           SET balance = point_balances.balance + excluded.balance, updated_at = excluded.updated_at \
         RETURNING balance",
    )
    .bind(user_id)
    .bind(amount)
    .bind(now)
    .fetch_one(c)
    .await)?;
    record(tx, user_id, Kind::Charge, amount, balance, None, now).await?;
    Ok(balance)
}
