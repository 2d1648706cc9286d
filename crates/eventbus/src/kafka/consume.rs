//! Consuming: joining a group, receiving by partition, applying through the runner, then
//! committing past what was applied and seeking back to what was not.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use db::{Db, Tx};
use events::Envelope;
use futures::FutureExt as _;
use metrics::counter;
use rdkafka::{
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::KafkaResult,
    message::BorrowedMessage,
    ClientConfig, Message, Offset, TopicPartitionList,
};
use tokio_util::sync::CancellationToken;

use super::{KafkaBus, AWAKE_FETCHES, NETWORK_TIMEOUT};
use crate::consumer::{Checkpoint, Claim, Delivery, Handler, Runner};
use crate::doorbell::LOOK_AGAIN;
use crate::settings::BusSettings;

use super::member::{resume, Member};

/// How often a paused consumer looks at its assignment.
const ASSIGNMENT_LOOK: Duration = Duration::from_secs(1);

impl KafkaBus {
    /// Runs one consumer of `handler`'s group until `shutdown`: polls a batch, applies each
    /// partition's events in their own transaction (partitions concurrently), then commits the
    /// offsets of what is done. Anything not done is sought back and delivered again.
    pub(crate) async fn run_consumer(
        &self,
        db: Db,
        handler: Arc<dyn Handler>,
        settings: BusSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let group = handler.group().to_owned();
        let topics = handler.topics();
        let consumer = self.join(&self.group_id(&db, &group).await?, &topics, &settings)?;
        self.assignments.joined(&group);
        let consumed = self
            .consume(&db, &consumer, &*handler, &settings, &shutdown)
            .await;
        self.assignments.stopped(&group);
        consumer.leave().await;
        consumed
    }

    /// [`Self::run_consumer`]'s loop, as `consumer`.
    async fn consume(
        &self,
        db: &Db,
        consumer: &Member,
        handler: &dyn Handler,
        settings: &BusSettings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let policy = &settings.retry;
        let group = handler.group().to_owned();
        let topics = handler.topics();
        let batch_size = settings.batch_size.max(1) as usize;
        let idle_after = settings.kafka_fetch_wait * AWAKE_FETCHES;
        while let Some(first) = self
            .next_message(consumer, &group, &topics, idle_after, shutdown)
            .await
        {
            self.assignments.saw(&group, true);
            let partitions = receive(consumer, first, batch_size, &group);
            let runner = Runner {
                db,
                handler,
                checkpoint: &AfterCommit,
                policy,
                shutdown,
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
        Ok(())
    }

    /// A consumer of the Kafka group `group_id`, subscribed to `topics`.
    pub(super) fn join(
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

    /// Notes whether `consumer` holds partitions now (what the watchdog reads).
    fn look_at_assignment(&self, consumer: &StreamConsumer, group: &str) {
        let assigned = consumer.assignment().is_ok_and(|a| a.count() > 0);
        self.assignments.saw(group, assigned);
    }

    /// Waits for `consumer`'s next message; `None` on shutdown. Having received nothing for
    /// `idle_after`, it pauses its partitions, so an idle group costs the broker no fetches,
    /// until the [`Doorbell`] rings for one of `topics` or [`LOOK_AGAIN`] passes. It keeps
    /// polling meanwhile: the group would drop a member that stops.
    pub(super) async fn next_message<'c>(
        &self,
        consumer: &'c Arc<StreamConsumer>,
        group: &str,
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
            self.look_at_assignment(consumer, group);
            let Some(listening) = self.doorbell.listen(topics) else {
                continue;
            };
            // Pausing what is assigned now: partitions assigned later (a join that completes
            // meanwhile) are not paused, and deliver what waits for them.
            if let Err(error) = consumer.assignment().and_then(|a| consumer.pause(&a)) {
                return Some(Err(error));
            }
            let rung = listening.rung(LOOK_AGAIN);
            tokio::pin!(rung);
            let message = loop {
                tokio::select! {
                    message = consumer.recv() => break Some(message),
                    () = &mut rung => break None,
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(ASSIGNMENT_LOOK) => {
                        self.look_at_assignment(consumer, group);
                    }
                }
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
pub(super) struct Received {
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
pub(super) fn receive(
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

/// Kafka keeps offsets itself: they are committed after the transaction, not inside it. A
/// partition has one consumer at a time, which counts a failing event's attempts itself.
pub(super) struct AfterCommit;

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
