//! The history of a balance.

use chrono::{DateTime, Utc};
use db::{on_db, sqlx, Db};

use super::Kind;

/// The most entries `history` returns.
const LIMIT: i64 = 1000;

/// One change of a balance.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub amount: i64,
    pub balance_after: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    amount: i64,
    balance_after: i64,
    order_id: Option<i64>,
    created_at: DateTime<Utc>,
}

/// The latest changes of `user_id`'s balance, newest first (at most 1,000).
pub async fn history(db: &Db, user_id: i64) -> anyhow::Result<Vec<HistoryEntry>> {
    let rows: Vec<Row> = on_db!(db, c => sqlx::query_as(
        "SELECT id, kind, amount, balance_after, order_id, created_at FROM point_history \
         WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(LIMIT)
    .fetch_all(c)
    .await)?;
    rows.into_iter()
        .map(|row| {
            let kind = match row.kind.as_str() {
                "CHARGE" => Kind::Charge,
                "USE" => Kind::Use,
                "REFUND" => Kind::Refund,
                other => anyhow::bail!("unknown history kind {other}"),
            };
            Ok(HistoryEntry {
                id: row.id,
                kind,
                amount: row.amount,
                balance_after: row.balance_after,
                order_id: row.order_id,
                created_at: row.created_at,
            })
        })
        .collect()
}
