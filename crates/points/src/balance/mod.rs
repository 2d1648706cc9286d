//! Point balances: charge, spend for an order, and the history of each. A paid order is final
//! (only unpaid orders can be cancelled), so nothing refunds points; `REFUND` is a history type
//! the API reserves.
//!
//! Every change is one conditional statement on the balance row plus a history row, inside the
//! caller's transaction: no read-modify-write, so concurrent changes never lose an update, and
//! a balance never goes negative.

mod charge;
mod history;
mod use_for_order;

use chrono::{DateTime, Utc};
use db::{exec, on_db, on_tx, sqlx, Db, Tx};

pub use charge::{charge, MAX_CHARGE, MIN_CHARGE};
pub use history::{history, HistoryEntry};
pub use use_for_order::use_for_order;

/// Why points could not move.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    #[error("a charge is {MIN_CHARGE} to {MAX_CHARGE} KRW")]
    InvalidChargeAmount,
    #[error("the balance is {balance}, {needed} needed")]
    Insufficient { balance: i64, needed: i64 },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<sqlx::Error> for PointsError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unknown(e.into())
    }
}

/// The kind of a history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    Charge,
    Use,
    Refund,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Charge => "CHARGE",
            Kind::Use => "USE",
            Kind::Refund => "REFUND",
        }
    }
}

/// The balance of `user_id`; 0 when the user never had points.
pub async fn balance(db: &Db, user_id: i64) -> anyhow::Result<i64> {
    let balance: Option<i64> = on_db!(db, c => sqlx::query_scalar(
        "SELECT balance FROM point_balances WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(c)
    .await)?;
    Ok(balance.unwrap_or(0))
}

/// Appends a history entry in `tx`.
async fn record(
    tx: &mut Tx,
    user_id: i64,
    kind: Kind,
    amount: i64,
    balance_after: i64,
    order_id: Option<i64>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    exec!(
        tx,
        "INSERT INTO point_history (user_id, kind, amount, balance_after, order_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        user_id,
        kind.as_str(),
        amount,
        balance_after,
        order_id,
        at
    )?;
    Ok(())
}

/// Locks the balance row of `user_id` for the rest of `tx` (creating it at 0), so that the
/// check-then-act of the order operations cannot interleave for one user.
async fn lock_balance(tx: &mut Tx, user_id: i64) -> sqlx::Result<i64> {
    on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO point_balances (user_id, balance, updated_at) VALUES ($1, 0, $2) \
         ON CONFLICT (user_id) DO UPDATE SET updated_at = point_balances.updated_at \
         RETURNING balance",
    )
    .bind(user_id)
    .bind(Utc::now())
    .fetch_one(c)
    .await)
}

/// The history entry of `kind` for `order_id`, if one exists: `(amount, balance_after)`.
async fn order_entry(tx: &mut Tx, order_id: i64, kind: Kind) -> sqlx::Result<Option<(i64, i64)>> {
    on_tx!(tx, c => sqlx::query_as(
        "SELECT amount, balance_after FROM point_history WHERE order_id = $1 AND kind = $2",
    )
    .bind(order_id)
    .bind(kind.as_str())
    .fetch_optional(c)
    .await)
}

#[cfg(test)]
mod tests;
