//! The transactional outbox: events are written in the caller's transaction, next to the state
//! change they announce, and published by the relay only once that transaction has committed.

use std::sync::Arc;

use chrono::Utc;
use db::{exec, on_db, on_tx, sqlx, Db, Tx};
use events::Envelope;
use sqlx::types::Json;
use tokio::sync::Notify;

/// Handle for appending events; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    partitions: u32,
    relay_wake: Arc<Notify>,
}

impl Outbox {
    pub(crate) fn new(partitions: u32, relay_wake: Arc<Notify>) -> Self {
        Self {
            partitions: partitions.max(1),
            relay_wake,
        }
    }

    /// Writes `events` into the outbox inside `tx`. Nothing is published unless `tx` commits;
    /// once it has, the relay of this process is woken at once (and, on PostgreSQL, the relays
    /// of every other instance through `NOTIFY`). Events are published in the order written.
    pub async fn append(&self, tx: &mut Tx, events: &[Envelope]) -> sqlx::Result<()> {
        let now = Utc::now();
        // One multi-row INSERT per chunk (SQLite allows 32,766 bound parameters).
        for chunk in events.chunks(1000) {
            on_tx!(tx, c => {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO outbox (event_id, topic, event_key, partition_no, envelope, created_at) ",
                );
                insert.push_values(chunk, |mut row, event| {
                    row.push_bind(event.id)
                        .push_bind(event.topic())
                        .push_bind(&event.key)
                        .push_bind(partition_for(&event.key, self.partitions))
                        .push_bind(Json(event))
                        .push_bind(now);
                });
                insert.build().execute(c).await.map(|_| ())
            })?;
        }
        tx.after_commit(&self.relay_wake);
        Ok(())
    }

    /// Number of events written but not yet published (the outbox backlog).
    pub async fn backlog(db: &Db) -> sqlx::Result<i64> {
        on_db!(db, c => sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(c)
            .await)
    }

    /// The backlog and the last sequence number written: a second reading equal to a first
    /// means no event was written or published in between.
    pub(crate) async fn watermark(db: &Db) -> sqlx::Result<(i64, i64)> {
        on_db!(db, c => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL), \
                    (SELECT COALESCE(MAX(seq), 0) FROM outbox)",
        )
        .fetch_one(c)
        .await)
    }

    /// Deletes outbox rows published before `before`, and the dedupe records of events
    /// processed before then; how many rows went.
    pub(crate) async fn prune(db: &Db, before: chrono::DateTime<Utc>) -> sqlx::Result<u64> {
        let mut tx = db.begin().await?;
        let events = exec!(
            tx,
            "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1",
            before
        )?;
        let records = exec!(
            tx,
            "DELETE FROM processed_events WHERE processed_at < $1",
            before
        )?;
        tx.commit().await?;
        Ok(events + records)
    }
}

/// Stable partition of a key (FNV-1a), the same in every process and release.
pub fn partition_for(key: &str, partitions: u32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as i32
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(partition_for("order-42", 8), partition_for("order-42", 8));
        assert!((0..8).contains(&partition_for("anything", 8)));
        assert_eq!(partition_for("x", 1), 0);
        let spread: std::collections::HashSet<_> =
            (0..100).map(|i| partition_for(&i.to_string(), 8)).collect();
        assert_eq!(spread.len(), 8, "keys spread over every partition");
    }
}
