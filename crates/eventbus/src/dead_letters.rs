//! Dead letters: events a consumer gave up on. Replaying one appends its envelope (same id)
//! to the outbox again; consumer groups that already applied it skip it through their dedupe
//! records, the group that failed applies it.

use chrono::{DateTime, Utc};
use db::{exec, on_db, on_tx, sqlx, Db};
use events::Envelope;
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use crate::outbox::Outbox;

/// A dead-lettered event.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub event_id: Uuid,
    pub topic: String,
    pub error: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Dead letters not yet replayed, oldest first.
pub async fn pending(db: &Db) -> sqlx::Result<Vec<DeadLetter>> {
    on_db!(db, c => sqlx::query_as(
        "SELECT id, consumer, event_id, topic, error, attempts, created_at FROM dead_letters \
         WHERE replayed_at IS NULL AND discarded_at IS NULL ORDER BY id",
    )
    .fetch_all(c)
    .await)
}

/// Which dead letters an operator means.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub topic: Option<String>,
    pub consumer: Option<String>,
    /// Dead-lettered at or after this.
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.topic.as_ref().is_none_or(|t| *t == letter.topic)
            && self.consumer.as_ref().is_none_or(|c| *c == letter.consumer)
            && self.since.is_none_or(|since| letter.created_at >= since)
    }
}

/// Marks the pending dead letters `ids` discarded: kept on record, never replayed. Returns how
/// many were pending.
pub async fn discard(db: &Db, ids: &[i64]) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let mut discarded = 0;
    for id in ids {
        discarded += exec!(
            tx,
            "UPDATE dead_letters SET discarded_at = $1 \
             WHERE id = $2 AND replayed_at IS NULL AND discarded_at IS NULL",
            Utc::now(),
            id
        )?;
    }
    tx.commit().await?;
    Ok(discarded as usize)
}

/// Dead letters not yet replayed, per consumer group.
pub async fn pending_by_consumer(db: &Db) -> sqlx::Result<Vec<(String, i64)>> {
    on_db!(db, c => sqlx::query_as(
        "SELECT consumer, COUNT(*) FROM dead_letters WHERE replayed_at IS NULL AND discarded_at IS NULL \
         GROUP BY consumer",
    )
    .fetch_all(c)
    .await)
}

/// Dead letters replayed in one transaction.
const REPLAY_PAGE: usize = 500;

/// Replays the dead letters `ids` that are still pending; returns how many were replayed, and
/// tells `progress` the count after each page. Each page is claimed by one `UPDATE … WHERE
/// replayed_at IS NULL AND discarded_at IS NULL` in the transaction that re-appends it, so a
/// letter discarded (or replayed) by someone else meanwhile is skipped, never sent, and a replay
/// cut short leaves the rest pending.
pub async fn replay(
    db: &Db,
    outbox: &Outbox,
    ids: &[i64],
    mut progress: impl FnMut(usize),
) -> anyhow::Result<usize> {
    let mut replayed = 0;
    for page in ids.chunks(REPLAY_PAGE) {
        let mut tx = db.begin().await?;
        let now = Utc::now();
        let mut letters: Vec<(i64, Json<Envelope>)> = on_tx!(tx, c => {
            let mut claim = sqlx::QueryBuilder::new("UPDATE dead_letters SET replayed_at = ");
            claim
                .push_bind(now)
                .push(" WHERE replayed_at IS NULL AND discarded_at IS NULL AND id IN (");
            let mut list = claim.separated(", ");
            for id in page {
                list.push_bind(*id);
            }
            claim.push(") RETURNING id, envelope");
            claim.build_query_as().fetch_all(c).await
        })?;
        letters.sort_by_key(|(id, _)| *id);
        let envelopes: Vec<Envelope> = letters.into_iter().map(|(_, Json(e))| e).collect();
        outbox.append(&mut tx, &envelopes).await?;
        tx.commit().await?;
        replayed += envelopes.len();
        progress(replayed);
    }
    Ok(replayed)
}
