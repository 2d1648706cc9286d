//! Publishing: the relay's rounds over the outbox, and direct publishes, with the idempotent
//! producer; a row is marked published only once Kafka acknowledged it and every row before it.

use chrono::Utc;
use db::{on_db, sqlx, Db, TxInner};
use events::Envelope;
use metrics::counter;
use rdkafka::{producer::FutureRecord, util::Timeout};
use sqlx::types::Json;

use super::{KafkaBus, NETWORK_TIMEOUT};

impl KafkaBus {
    /// Publishes up to `batch` unpublished outbox rows in order and marks the acknowledged
    /// prefix as published. A row whose publish failed (and every later one) stays in the
    /// outbox for the next round, so per-key order holds; re-sent rows are deduplicated by
    /// the consumers.
    pub(crate) async fn relay_once(&self, db: &Db, batch: i64) -> anyhow::Result<usize> {
        let rows: Vec<(i64, Json<Envelope>)> = on_db!(db, c => sqlx::query_as(
            "SELECT seq, envelope FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(batch)
        .fetch_all(c)
        .await)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let envelopes: Vec<&Envelope> = rows.iter().map(|(_, Json(e))| e).collect();
        let results = self.send_all(&envelopes).await?;
        let acknowledged = results.iter().take_while(|r| r.is_ok()).count();
        let seqs: Vec<i64> = rows[..acknowledged].iter().map(|r| r.0).collect();
        if !seqs.is_empty() {
            self.doorbell
                .ring(rows[..acknowledged].iter().map(|(_, Json(e))| e.topic()));
            mark_published(db, &seqs).await?;
        }
        for (_, Json(event)) in &rows[..acknowledged] {
            counter!("stampede_events_published_total", "topic" => event.topic().to_owned())
                .increment(1);
        }
        if let Some(Err((error, _))) = results.get(acknowledged) {
            anyhow::bail!("publishing to Kafka failed: {error}");
        }
        Ok(acknowledged)
    }

    /// Sends `events` in order and waits for every acknowledgement; one result per event.
    pub(super) async fn send_all(
        &self,
        events: &[&Envelope],
    ) -> anyhow::Result<Vec<rdkafka::producer::future_producer::OwnedDeliveryResult>> {
        let prepared: Vec<(String, &str, Vec<u8>)> = events
            .iter()
            .map(|e| {
                Ok((
                    self.topic(e.topic()),
                    e.key.as_str(),
                    serde_json::to_vec(e)?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let sends = prepared.iter().map(|(topic, key, payload)| {
            self.producer.send(
                FutureRecord::to(topic).key(*key).payload(payload),
                Timeout::After(NETWORK_TIMEOUT),
            )
        });
        let results = futures::future::join_all(sends).await;
        let acknowledged = results.iter().filter(|result| result.is_ok()).count();
        self.acknowledged
            .fetch_add(acknowledged as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(results)
    }

    /// Publishes `events` directly (no outbox) and waits until Kafka has acknowledged all.
    pub(crate) async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()> {
        let refs: Vec<&Envelope> = events.iter().collect();
        for (event, result) in events.iter().zip(self.send_all(&refs).await?) {
            if let Err((error, _)) = result {
                anyhow::bail!("publishing {} to Kafka failed: {error}", event.id);
            }
            counter!("stampede_events_published_total", "topic" => event.topic().to_owned())
                .increment(1);
        }
        self.doorbell.ring(events.iter().map(Envelope::topic));
        Ok(())
    }
}

/// Marks `seqs` published. On PostgreSQL the commit does not wait for its WAL to reach the
/// disk (`synchronous_commit` off for this transaction alone): a mark lost to a crash only
/// sends those rows again, which the consumers deduplicate, and the relay commits about four
/// marks an order, each otherwise queueing behind (and delaying) the requests' own flushes.
pub(super) async fn mark_published(db: &Db, seqs: &[i64]) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let now = Utc::now();
    match &mut tx.inner {
        TxInner::Postgres(t) => {
            sqlx::query(
                "UPDATE outbox SET published_at = $1 \
                 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lazy_commit \
                 WHERE seq = ANY($2)",
            )
            .bind(now)
            .bind(seqs)
            .execute(&mut **t)
            .await?;
        }
        TxInner::Sqlite(t) => {
            sqlx::query(
                "UPDATE outbox SET published_at = $1 WHERE seq IN (SELECT value FROM json_each($2))",
            )
            .bind(now)
            .bind(serde_json::to_string(seqs)?)
            .execute(&mut **t)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
