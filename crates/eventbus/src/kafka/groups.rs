//! Consumer groups as the broker keeps them: their Kafka ids and generations, their lag, and
//! moving a group the broker will not form to a fresh id with its committed offsets.

use std::sync::Arc;

use anyhow::Context as _;
use db::{on_db, sqlx, Db};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    error::KafkaResult,
    ClientConfig, Offset, TopicPartitionList,
};

use super::{KafkaBus, NETWORK_TIMEOUT};

impl KafkaBus {
    /// The Kafka group id of `group` in its current generation (see [`Self::move_group`]).
    pub(super) async fn group_id(&self, db: &Db, group: &str) -> anyhow::Result<String> {
        Ok(self.group_id_of(group, generation(db, group).await?))
    }

    pub(super) fn group_id_of(&self, group: &str, generation: i64) -> String {
        match generation {
            0 => format!("{}{group}", self.prefix),
            n => format!("{}{group}.g{n}", self.prefix),
        }
    }

    /// Events of `group` published but not yet committed by it, over `topics`.
    pub(crate) async fn lag(&self, db: &Db, group: &str, topics: &[String]) -> anyhow::Result<i64> {
        let observer = self.observer(&self.group_id(db, group).await?)?;
        let topics = self.topics_of(topics);
        tokio::task::spawn_blocking(move || {
            let committed = committed_offsets(&observer, &topics)?;
            let mut lag = 0;
            for element in committed.elements() {
                let (low, high) = observer.fetch_watermarks(
                    element.topic(),
                    element.partition(),
                    NETWORK_TIMEOUT,
                )?;
                lag += match element.offset() {
                    Offset::Offset(done) => (high - done).max(0),
                    _ => high - low,
                };
            }
            Ok(lag)
        })
        .await?
    }

    /// A client of the Kafka group `group_id` that never joins it: it reads and commits offsets.
    pub(super) fn observer(&self, group_id: &str) -> anyhow::Result<Arc<BaseConsumer>> {
        let mut observers = self.observers.lock().expect("observer map lock");
        if let Some(observer) = observers.get(group_id) {
            return Ok(observer.clone());
        }
        let observer: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &self.bootstrap)
                .set("group.id", group_id)
                .set("enable.auto.commit", "false")
                .create()?,
        );
        observers.insert(group_id.to_owned(), observer.clone());
        Ok(observer)
    }

    /// Moves `group` to a fresh Kafka group id, starting from the offsets its current one
    /// committed, for when the broker will not let the current one form: Tansu 0.6 can keep a
    /// group waiting for a leader that is gone for good after a pause longer than the session
    /// (ARCHITECTURE.md). Every process's consumers of `group` follow on their next start, since
    /// they read the generation from the database. Handlers' effects stay exactly-once: their
    /// dedupe records are keyed by the group's name, not its Kafka id.
    pub(crate) async fn move_group(
        &self,
        db: &Db,
        group: &str,
        topics: &[String],
    ) -> anyhow::Result<()> {
        let from = generation(db, group).await?;
        let (old, new) = (
            self.group_id_of(group, from),
            self.group_id_of(group, from + 1),
        );
        let (old_observer, new_observer) = (self.observer(&old)?, self.observer(&new)?);
        let topics = self.topics_of(topics);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let start = real_offsets(&committed_offsets(&old_observer, &topics)?)?;
            if start.count() > 0 {
                new_observer.commit(&start, CommitMode::Sync)?;
            }
            Ok(())
        })
        .await?
        .with_context(|| format!("seeding {new} with the offsets of {old}"))?;
        let moved = on_db!(db, c => sqlx::query(
            "INSERT INTO kafka_group_generations (consumer_group, generation) VALUES ($1, $2) \
             ON CONFLICT (consumer_group) DO UPDATE SET generation = excluded.generation \
             WHERE kafka_group_generations.generation = $3",
        )
        .bind(group)
        .bind(from + 1)
        .bind(from)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        if moved == 1 {
            tracing::warn!(consumer = %group, from = %old, to = %new, "moved the consumer group to a new Kafka group id");
        }
        Ok(())
    }
}

/// The generation of `group`'s Kafka group id: 0 until it was first moved.
pub(crate) async fn generation(db: &Db, group: &str) -> anyhow::Result<i64> {
    let generation: Option<i64> = on_db!(db, c => sqlx::query_scalar(
        "SELECT generation FROM kafka_group_generations WHERE consumer_group = $1",
    )
    .bind(group)
    .fetch_optional(c)
    .await)?;
    Ok(generation.unwrap_or(0))
}

/// The offsets `observer`'s group committed on every partition of `topics` (blocking).
pub(super) fn committed_offsets(
    observer: &BaseConsumer,
    topics: &[String],
) -> anyhow::Result<TopicPartitionList> {
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = observer.fetch_metadata(Some(topic), NETWORK_TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                assignment.add_partition(topic, p.id());
            }
        }
    }
    Ok(observer.committed_offsets(assignment, NETWORK_TIMEOUT)?)
}

/// The partitions of `list` that hold an actual offset (not "stored", "end" or "invalid").
pub(super) fn real_offsets(list: &TopicPartitionList) -> KafkaResult<TopicPartitionList> {
    let mut real = TopicPartitionList::new();
    for element in list.elements() {
        if let Offset::Offset(offset) = element.offset() {
            real.add_partition_offset(
                element.topic(),
                element.partition(),
                Offset::Offset(offset),
            )?;
        }
    }
    Ok(real)
}
