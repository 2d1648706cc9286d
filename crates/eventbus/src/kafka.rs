//! The `kafka://` bus (rdkafka): the relay publishes outbox rows with an idempotent producer
//! (`acks=all`, key → partition); each consumer group reads with manual offset commits that
//! happen only after the effect's database transaction has committed.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::Utc;
use db::{on_db, sqlx, Db, Tx, TxInner};
use events::Envelope;
use futures::FutureExt as _;
use metrics::counter;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer},
    error::{KafkaResult, RDKafkaErrorCode},
    message::BorrowedMessage,
    producer::{FutureProducer, FutureRecord, Producer as _},
    util::Timeout,
    ClientConfig, Message, Offset, TopicPartitionList,
};
use sqlx::types::Json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::consumer::{Checkpoint, Claim, Delivery, Handler, RetryPolicy, Runner};
use crate::doorbell::{Doorbell, LOOK_AGAIN};
use crate::BusSettings;

const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a consumer stopping with its process waits to have left its group.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// A consumer that received nothing for this many fetch waits pauses its partitions until
/// its topics ring ([`Doorbell`]).
const AWAKE_FETCHES: u32 = 5;

/// A connection to a Kafka-protocol cluster.
pub(crate) struct KafkaBus {
    bootstrap: String,
    prefix: String,
    producer: FutureProducer,
    /// One metadata client per consumer group, for lag queries.
    observers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    doorbell: Arc<Doorbell>,
}

impl KafkaBus {
    /// Connects the producer and creates every topic Stampede uses (existing topics are kept).
    pub(crate) async fn connect(bootstrap: &str, settings: &BusSettings) -> anyhow::Result<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", settings.kafka_linger.as_millis().to_string())
            .set("message.timeout.ms", "30000")
            .create()?;
        let topics = events::topics::ALL
            .iter()
            .copied()
            .chain(settings.extra_topics.iter().map(String::as_str));
        let bus = Self {
            bootstrap: bootstrap.to_owned(),
            prefix: settings.topic_prefix.clone(),
            producer,
            observers: Mutex::default(),
            doorbell: Arc::new(Doorbell::new(&settings.topic_prefix, topics)),
        };
        bus.create_topics(settings).await?;
        Ok(bus)
    }

    pub(crate) fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbell
    }

    fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn create_topics(&self, settings: &BusSettings) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let names: Vec<String> = events::topics::ALL
            .iter()
            .copied()
            .chain(settings.extra_topics.iter().map(String::as_str))
            .map(|t| self.topic(t))
            .collect();
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    settings.partitions as i32,
                    TopicReplication::Fixed(settings.kafka_replication),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(NETWORK_TIMEOUT));
        for result in admin.create_topics(&topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
            }
        }
        Ok(())
    }

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
    async fn send_all(
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
        Ok(futures::future::join_all(sends).await)
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

    /// The Kafka group id of `group` in its current generation (see [`Self::move_group`]).
    async fn group_id(&self, db: &Db, group: &str) -> anyhow::Result<String> {
        Ok(self.group_id_of(group, generation(db, group).await?))
    }

    fn group_id_of(&self, group: &str, generation: i64) -> String {
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

    fn topics_of(&self, topics: &[String]) -> Vec<String> {
        topics.iter().map(|t| self.topic(t)).collect()
    }

    /// A client of the Kafka group `group_id` that never joins it: it reads and commits offsets.
    fn observer(&self, group_id: &str) -> anyhow::Result<Arc<BaseConsumer>> {
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

    /// One metadata round trip, for readiness checks.
    pub(crate) async fn ping(&self) -> anyhow::Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|_| ())
        })
        .await??;
        Ok(())
    }

    /// Runs one consumer of `handler`'s group until `shutdown`: polls a batch, applies each
    /// partition's events in their own transaction (partitions concurrently), then commits the
    /// offsets of what is done. Anything not done is sought back and delivered again.
    pub(crate) async fn run_consumer(
        &self,
        db: Db,
        handler: Arc<dyn Handler>,
        settings: BusSettings,
        policy: RetryPolicy,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let group = handler.group().to_owned();
        let topics = handler.topics();
        let consumer = self.join(&self.group_id(&db, &group).await?, &topics, &settings)?;
        let batch_size = settings.batch_size.max(1) as usize;
        let idle_after = settings.kafka_fetch_wait * AWAKE_FETCHES;
        while let Some(first) = self
            .next_message(&consumer, &topics, idle_after, &shutdown)
            .await
        {
            let partitions = receive(&consumer, first, batch_size, &group);
            let runner = Runner {
                db: &db,
                handler: &*handler,
                checkpoint: &AfterCommit,
                policy: &policy,
                shutdown: &shutdown,
            };
            let runs = partitions.iter().map(|(key, received)| {
                let runner = &runner;
                async move {
                    let done = match received.deliveries.as_slice() {
                        [] => Ok(None),
                        deliveries => runner.run(deliveries).await,
                    };
                    (key, received, done)
                }
            });
            let mut commits = TopicPartitionList::new();
            for ((topic, partition), received, done) in futures::future::join_all(runs).await {
                let done = done.unwrap_or_else(|error| {
                    tracing::warn!(consumer = %group, %topic, partition, error = format!("{error:#}"), "consumer batch failed; will retry");
                    None
                });
                let (committed, first_undone) = received.after(done);
                if let Some(position) = committed {
                    commits.add_partition_offset(
                        topic,
                        *partition,
                        Offset::Offset(position + 1),
                    )?;
                }
                if let Some(position) = first_undone {
                    consumer.seek(topic, *partition, Offset::Offset(position), NETWORK_TIMEOUT)?;
                    tokio::time::sleep(policy.first_backoff).await;
                }
            }
            if commits.count() > 0 {
                if let Err(error) = consumer.commit(&commits, CommitMode::Async) {
                    tracing::warn!(consumer = %group, %error, "offset commit failed; events will be redelivered and deduplicated");
                }
            }
        }
        consumer.leave().await;
        Ok(())
    }

    /// A consumer of the Kafka group `group_id`, subscribed to `topics`.
    fn join(
        &self,
        group_id: &str,
        topics: &[String],
        settings: &BusSettings,
    ) -> anyhow::Result<Member> {
        let mut config = ClientConfig::new();
        if let Some(instance) = &settings.kafka_instance_id {
            config.set("group.instance.id", instance);
        }
        let consumer: StreamConsumer = config
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.wait.max.ms",
                settings.kafka_fetch_wait.as_millis().to_string(),
            )
            .set("session.timeout.ms", "10000")
            // Also the rebalance timeout: how long a rebalance waits for members to rejoin. A
            // member killed without leaving never does, and some brokers (Tansu) only drop it
            // when this runs out, so keep it short; a batch takes far less.
            .set("max.poll.interval.ms", "20000")
            .create()?;
        let kafka_topics = self.topics_of(topics);
        let topic_refs: Vec<&str> = kafka_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs)?;
        Ok(Member(Some(Arc::new(consumer))))
    }

    /// Waits for `consumer`'s next message; `None` on shutdown. Having received nothing for
    /// `idle_after`, it pauses its partitions, so an idle group costs the broker no fetches,
    /// until the [`Doorbell`] rings for one of `topics` or [`LOOK_AGAIN`] passes. It keeps
    /// polling meanwhile: the group would drop a member that stops.
    async fn next_message<'c>(
        &self,
        consumer: &'c Arc<StreamConsumer>,
        topics: &[String],
        idle_after: Duration,
        shutdown: &CancellationToken,
    ) -> Option<KafkaResult<BorrowedMessage<'c>>> {
        loop {
            tokio::select! {
                message = consumer.recv() => return Some(message),
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(idle_after) => {}
            }
            let Some(listening) = self.doorbell.listen(topics) else {
                continue;
            };
            if let Err(error) = consumer.assignment().and_then(|a| consumer.pause(&a)) {
                return Some(Err(error));
            }
            let message = tokio::select! {
                message = consumer.recv() => Some(message),
                () = listening.rung(LOOK_AGAIN) => None,
                () = shutdown.cancelled() => return None,
            };
            if let Err(error) = resume(consumer) {
                return Some(Err(error));
            }
            if message.is_some() {
                return message;
            }
        }
    }
}

/// What one poll brought from one partition: the events to apply, and the last offset received
/// (which may be a message that is not an event, skipped but committed past once the rest is
/// done).
#[derive(Default)]
struct Received {
    deliveries: Vec<Delivery>,
    last_seen: i64,
}

impl Received {
    /// Given the position of the last delivery applied (`None`: none was), the position to
    /// commit up to and the one to seek back to, so that what was not applied comes again.
    fn after(&self, done: Option<i64>) -> (Option<i64>, Option<i64>) {
        let last = self.deliveries.last().map(|d| d.position);
        let committed = if done == last {
            Some(self.last_seen)
        } else {
            done
        };
        let first_undone = match (done, self.deliveries.first()) {
            (Some(done), _) if Some(done) < last => Some(done + 1),
            (None, Some(first)) => Some(first.position),
            _ => None,
        };
        (committed, first_undone)
    }
}

/// `first` and what else has already arrived, up to `batch_size` messages, by partition.
fn receive(
    consumer: &StreamConsumer,
    first: KafkaResult<BorrowedMessage<'_>>,
    batch_size: usize,
    group: &str,
) -> BTreeMap<(String, i32), Received> {
    let mut partitions: BTreeMap<(String, i32), Received> = BTreeMap::new();
    let mut received = 0;
    let mut next = Some(first);
    while let Some(message) = next.take() {
        match message {
            Ok(message) => {
                received += 1;
                let key = (message.topic().to_owned(), message.partition());
                let partition = partitions.entry(key).or_default();
                partition.last_seen = message.offset();
                match message.payload().map(serde_json::from_slice::<Envelope>) {
                    Some(Ok(envelope)) => partition.deliveries.push(Delivery {
                        envelope,
                        position: message.offset(),
                    }),
                    _ => {
                        tracing::error!(consumer = %group, topic = message.topic(), offset = message.offset(), "skipping a message that is not an event envelope");
                        counter!("stampede_events_failed_total", "consumer" => group.to_owned(), "topic" => message.topic().to_owned()).increment(1);
                    }
                }
            }
            Err(error) => tracing::warn!(consumer = %group, %error, "Kafka consumer error"),
        }
        if received < batch_size {
            next = consumer.recv().now_or_never();
        }
    }
    partitions
}

/// A consumer's membership of its Kafka group. Leaving it (librdkafka's close) waits on the
/// broker and has been seen upstream never to return (rust-rdkafka issues 509 and 611), so it
/// happens on a thread of its own: a leave that hangs holds up neither the runtime's threads
/// (a watchdog restart drops a consumer) nor the process's exit.
struct Member(Option<Arc<StreamConsumer>>);

impl Member {
    /// Leaves the group, waiting at most [`LEAVE_WAIT`] (on shutdown, so that the group's
    /// partitions move to the other instances now rather than when the session runs out).
    async fn leave(mut self) {
        let Some(left) = self.0.take().and_then(leave_aside) else {
            return;
        };
        if tokio::time::timeout(LEAVE_WAIT, left).await.is_err() {
            tracing::warn!("a Kafka consumer did not leave its group within {LEAVE_WAIT:?}; going on without waiting");
        }
    }
}

impl std::ops::Deref for Member {
    type Target = Arc<StreamConsumer>;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("a member until it leaves")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            leave_aside(consumer);
        }
    }
}

/// Closes `consumer` on a thread of its own when this is its last handle; the receiver
/// resolves once it has left.
fn leave_aside(consumer: Arc<StreamConsumer>) -> Option<oneshot::Receiver<()>> {
    let consumer = Arc::into_inner(consumer)?;
    let (left, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("kafka-leave".to_owned())
        .spawn(move || {
            drop(consumer);
            let _ = left.send(());
        })
        .ok()?;
    Some(done)
}

/// Resumes fetching every partition of `consumer`. librdkafka's fetcher notices a resumed
/// partition only at its next periodic look, up to a second later (each hop into a paused group
/// took one), unless something wakes it: a seek of a partition to where it stands, or, when no
/// partition has consumed anything yet, a request to the broker.
fn resume(consumer: &Arc<StreamConsumer>) -> KafkaResult<()> {
    let assignment = consumer.assignment()?;
    consumer.resume(&assignment)?;
    let here = real_offsets(&consumer.position()?)?;
    if here.count() > 0 {
        consumer.seek_partitions(here, Duration::ZERO)?;
    } else if let Some(first) = assignment.elements().first() {
        let (consumer, topic, partition) = (
            consumer.clone(),
            first.topic().to_owned(),
            first.partition(),
        );
        tokio::task::spawn_blocking(move || {
            let _ = consumer.fetch_watermarks(&topic, partition, NETWORK_TIMEOUT);
            leave_aside(consumer);
        });
    }
    Ok(())
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
fn committed_offsets(
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

/// Kafka keeps offsets itself: they are committed after the transaction, not inside it. A
/// partition has one consumer at a time, which counts a failing event's attempts itself.
struct AfterCommit;

#[async_trait]
impl Checkpoint for AfterCommit {
    async fn claim(&self, _tx: &mut Tx) -> anyhow::Result<Option<Claim>> {
        Ok(Some(Claim {
            done: -1,
            attempts: 0,
            last_error: None,
        }))
    }

    async fn advance(&self, _tx: &mut Tx, _position: i64) -> anyhow::Result<()> {
        Ok(())
    }

    async fn failed(&self, _tx: &mut Tx, _attempts: u32, _error: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

async fn mark_published(db: &Db, seqs: &[i64]) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let now = Utc::now();
    match &mut tx.inner {
        TxInner::Postgres(t) => {
            sqlx::query("UPDATE outbox SET published_at = $1 WHERE seq = ANY($2)")
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

/// The partitions of `list` that hold an actual offset (not "stored", "end" or "invalid").
fn real_offsets(list: &TopicPartitionList) -> KafkaResult<TopicPartitionList> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Events at `positions`, with the last message received at `last_seen`.
    fn received(positions: &[i64], last_seen: i64) -> Received {
        let delivery = |position| Delivery {
            envelope: Envelope::raw("order-created", "1", "c".into(), None, 1, "{}".into()),
            position,
        };
        Received {
            deliveries: positions.iter().copied().map(delivery).collect(),
            last_seen,
        }
    }

    #[test]
    fn a_partition_done_is_committed_past_its_last_message_even_when_that_was_no_event() {
        assert_eq!(received(&[3, 4], 6).after(Some(4)), (Some(6), None));
        assert_eq!(received(&[], 6).after(None), (Some(6), None));
    }

    #[test]
    fn what_was_not_applied_is_sought_back_and_only_what_was_is_committed() {
        assert_eq!(received(&[3, 4, 5], 5).after(Some(3)), (Some(3), Some(4)));
        assert_eq!(received(&[3, 4, 5], 5).after(None), (None, Some(3)));
    }
}
