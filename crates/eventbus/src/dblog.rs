//! The `db://` bus: the outbox table itself is the durable log.
//!
//! The relay gives published rows a `log_seq` in commit order (one relay at a time, so positions
//! never appear out of order). Consumer groups keep one offset row per (topic, partition); a
//! worker claims a partition by locking its row (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
//! serializes writers anyway), applies the events and advances the offset in the same
//! transaction. Several workers of one group therefore split the partitions, keep per-key order,
//! and never apply an event twice.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use db::{exec, on_db, on_tx, sqlx, Backend, Db, Tx};
use events::Envelope;
use metrics::counter;
use sqlx::types::Json;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::consumer::{Checkpoint, Claim, Delivery, Handler, RetryPolicy, Runner};
use crate::{
    group_commit::GroupCommit,
    outbox::Outbox,
    settings::BusSettings,
    transport::{Consumed, Progress, Transport},
};

/// The `db://` bus: the outbox table is the log.
#[derive(Default)]
pub(crate) struct DbLog {
    /// Shares one transaction among concurrent `publish_now` calls.
    group_commit: GroupCommit,
}

#[async_trait]
impl Transport for DbLog {
    fn kind(&self) -> &'static str {
        "db"
    }

    /// Workers sharing the partitions through row locks: one on SQLite (its writers are
    /// serial anyway), `workers` on PostgreSQL.
    fn start_workers(
        self: Arc<Self>,
        consumed: Consumed<'_>,
        handler: Arc<dyn Handler>,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let settings = consumed.settings.clone();
        let workers = match consumed.db {
            Db::Sqlite(_) => 1,
            Db::Postgres(_) => settings.workers.max(1),
        };
        (0..workers)
            .map(|_| {
                tokio::spawn(run_worker(
                    consumed.db.clone(),
                    handler.clone(),
                    settings.clone(),
                    consumed.log_tick.subscribe(),
                    shutdown.clone(),
                ))
            })
            .collect()
    }

    async fn publish_now(
        &self,
        db: &Db,
        outbox: &Outbox,
        events: &[Envelope],
    ) -> anyhow::Result<()> {
        self.group_commit.publish(db, outbox, events).await
    }

    async fn relay_once(&self, db: &Db, batch: i64) -> anyhow::Result<usize> {
        relay_once(db, batch).await
    }

    /// The log is the database: it progresses while this process's writers commit or work.
    fn progress(&self) -> Progress {
        let activity = db::activity();
        Progress {
            done: activity.committed,
            working: activity.open > 0,
        }
    }

    async fn lag(&self, db: &Db, group: &str, topics: &[String]) -> anyhow::Result<i64> {
        lag(db, group, topics).await
    }

    async fn ping(&self, db: &Db) -> anyhow::Result<()> {
        Ok(db.ping().await?)
    }
}

/// Publishes up to `batch` committed outbox rows by giving them log positions; returns how
/// many it published. Only the relay leader calls this.
pub(crate) async fn relay_once(db: &Db, batch: i64) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let topics: Vec<String> = on_tx!(tx, c => sqlx::query_scalar(
        "WITH batch AS ( \
             SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) AS rn FROM outbox \
             WHERE published_at IS NULL ORDER BY seq LIMIT $1), \
         base AS (SELECT top FROM outbox_log_head WHERE id = 1) \
         UPDATE outbox SET log_seq = base.top + batch.rn, published_at = $2 \
         FROM batch, base WHERE outbox.seq = batch.seq RETURNING topic",
    )
    .bind(batch)
    .bind(Utc::now())
    .fetch_all(c)
    .await)?;
    if !topics.is_empty() {
        exec!(
            tx,
            "UPDATE outbox_log_head SET top = top + $1 WHERE id = 1",
            topics.len() as i64
        )?;
        if tx.backend() == Backend::Postgres {
            tx.execute_raw("SELECT pg_notify('stampede_log', '')")
                .await?;
        }
    }
    tx.commit().await?;
    for topic in &topics {
        counter!("stampede_events_published_total", "topic" => topic.clone()).increment(1);
    }
    Ok(topics.len())
}

/// Events of `topics` published but not yet consumed by `group`; a group whose offsets are
/// not registered yet lags by everything published.
pub(crate) async fn lag(db: &Db, group: &str, topics: &[String]) -> anyhow::Result<i64> {
    let mut lag = 0;
    for topic in topics {
        let behind: i64 = on_db!(db, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox o LEFT JOIN consumer_offsets c \
               ON c.consumer = $1 AND c.topic = o.topic AND c.partition_no = o.partition_no \
             WHERE o.topic = $2 AND o.log_seq IS NOT NULL AND o.log_seq > COALESCE(c.log_seq, 0)",
        )
        .bind(group)
        .bind(topic)
        .fetch_one(c)
        .await)?;
        lag += behind;
    }
    Ok(lag)
}

/// One worker of a consumer group on the db:// bus. Runs until `shutdown`; an in-flight batch
/// is finished first.
pub(crate) async fn run_worker(
    db: Db,
    handler: Arc<dyn Handler>,
    settings: BusSettings,
    mut log_tick: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let policy = &settings.retry;
    let group = handler.group().to_owned();
    // A worker only looks at registered partitions, so it must not start without its rows.
    while let Err(error) = register(&db, &group, &handler.topics(), settings.partitions).await {
        tracing::error!(consumer = %group, error = format!("{error:#}"), "cannot register consumer offsets; retrying");
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
    let mut rotation = 0usize;
    while !shutdown.is_cancelled() {
        log_tick.borrow_and_update();
        let worked = match pending_partitions(&db, &group).await {
            Ok(mut pending) => {
                // Workers start at different partitions so they rarely reach for the same row.
                if !pending.is_empty() {
                    rotation = rotation.wrapping_add(1);
                    let shift = rotation % pending.len();
                    pending.rotate_left(shift);
                }
                let mut worked = false;
                for (topic, partition) in pending {
                    let checkpoint = Offset {
                        group: group.clone(),
                        topic,
                        partition,
                        backend: db.backend(),
                        batch: settings.batch_size,
                    };
                    match consume_partition(&db, &*handler, &checkpoint, policy, &shutdown).await {
                        Ok(progress) => worked |= progress,
                        Err(error) => {
                            tracing::warn!(consumer = %group, error = format!("{error:#}"), "consumer batch failed; retrying");
                            tokio::time::sleep(policy.first_backoff).await;
                        }
                    }
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
                worked
            }
            Err(error) => {
                tracing::warn!(consumer = %group, error = format!("{error:#}"), "cannot read consumer offsets");
                false
            }
        };
        if !worked {
            tokio::select! {
                _ = log_tick.changed() => {}
                () = tokio::time::sleep(settings.poll_interval) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }
}

/// Creates the group's offset rows (at the start of the log) for every topic and partition.
async fn register(db: &Db, group: &str, topics: &[String], partitions: u32) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    for topic in topics {
        for partition in 0..partitions as i32 {
            exec!(
                tx,
                "INSERT INTO consumer_offsets (consumer, topic, partition_no) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                group,
                topic,
                partition
            )?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The (topic, partition) pairs where `group` has events left, in one query.
async fn pending_partitions(db: &Db, group: &str) -> anyhow::Result<Vec<(String, i32)>> {
    Ok(on_db!(db, c => sqlx::query_as(
        "SELECT c.topic, c.partition_no FROM consumer_offsets c WHERE c.consumer = $1 AND EXISTS ( \
           SELECT 1 FROM outbox o WHERE o.topic = c.topic AND o.partition_no = c.partition_no \
             AND o.log_seq > c.log_seq)",
    )
    .bind(group)
    .fetch_all(c)
    .await)?)
}

/// Claims one partition and consumes a batch from it; false when there was nothing to do or
/// another worker holds it.
async fn consume_partition(
    db: &Db,
    handler: &dyn Handler,
    offset: &Offset,
    policy: &RetryPolicy,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let batch = offset.fetch(db).await?;
    if batch.is_empty() {
        return Ok(false);
    }
    let runner = Runner {
        db,
        handler,
        checkpoint: offset,
        policy,
        shutdown,
    };
    Ok(runner.run(&batch).await?.is_some())
}

/// The offset row of one (group, topic, partition).
struct Offset {
    group: String,
    topic: String,
    partition: i32,
    backend: Backend,
    batch: i64,
}

impl Offset {
    /// Reads the next batch after the committed offset (without claiming; [`Runner::run`] claims
    /// and skips whatever another worker finished in between).
    async fn fetch(&self, db: &Db) -> anyhow::Result<Vec<Delivery>> {
        let rows: Vec<(i64, Json<Envelope>)> = on_db!(db, c => sqlx::query_as(
            "SELECT o.log_seq, o.envelope FROM outbox o JOIN consumer_offsets c \
               ON c.consumer = $1 AND c.topic = o.topic AND c.partition_no = o.partition_no \
             WHERE o.topic = $2 AND o.partition_no = $3 AND o.log_seq > c.log_seq \
             ORDER BY o.log_seq LIMIT $4",
        )
        .bind(&self.group)
        .bind(&self.topic)
        .bind(self.partition)
        .bind(self.batch)
        .fetch_all(c)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(position, Json(envelope))| Delivery { envelope, position })
            .collect())
    }
}

#[async_trait]
impl Checkpoint for Offset {
    async fn claim(&self, tx: &mut Tx) -> anyhow::Result<Option<Claim>> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT log_seq, attempts, last_error FROM consumer_offsets \
                 WHERE consumer = $1 AND topic = $2 AND partition_no = $3 FOR UPDATE SKIP LOCKED"
            }
            Backend::Sqlite => {
                "SELECT log_seq, attempts, last_error FROM consumer_offsets \
                 WHERE consumer = $1 AND topic = $2 AND partition_no = $3"
            }
        };
        let row: Option<(i64, i32, Option<String>)> = on_tx!(tx, c => sqlx::query_as(sql)
            .bind(&self.group)
            .bind(&self.topic)
            .bind(self.partition)
            .fetch_optional(c)
            .await)?;
        Ok(row.map(|(done, attempts, last_error)| Claim {
            done,
            attempts: attempts.max(0) as u32,
            last_error,
        }))
    }

    async fn advance(&self, tx: &mut Tx, position: i64) -> anyhow::Result<()> {
        exec!(
            tx,
            "UPDATE consumer_offsets SET log_seq = $4, attempts = 0, last_error = NULL, updated_at = $5 \
             WHERE consumer = $1 AND topic = $2 AND partition_no = $3",
            &self.group,
            &self.topic,
            self.partition,
            position,
            Utc::now()
        )?;
        Ok(())
    }

    async fn failed(&self, tx: &mut Tx, attempts: u32, error: &str) -> anyhow::Result<()> {
        exec!(
            tx,
            "UPDATE consumer_offsets SET attempts = $4, last_error = $5, updated_at = $6 \
             WHERE consumer = $1 AND topic = $2 AND partition_no = $3",
            &self.group,
            &self.topic,
            self.partition,
            attempts as i32,
            error,
            Utc::now()
        )?;
        Ok(())
    }
}
