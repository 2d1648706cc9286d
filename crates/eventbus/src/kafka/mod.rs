//! The `kafka://` bus (rdkafka): the relay publishes outbox rows with an idempotent producer
//! (`acks=all`, key → partition); each consumer group reads with manual offset commits that
//! happen only after the effect's database transaction has committed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use db::Db;
use events::Envelope;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::BaseConsumer,
    error::RDKafkaErrorCode,
    producer::{FutureProducer, Producer as _},
    ClientConfig,
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::Handler,
    doorbell::Doorbell,
    outbox::Outbox,
    settings::BusSettings,
    transport::{Consumed, Progress, Transport},
};

mod consume;
mod groups;
mod member;
mod produce;

use groups::generation;

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
    /// Whether each group's consumer in this process holds partitions.
    assignments: member::Assignments,
    /// Messages the brokers have acknowledged (the bus's progress).
    acknowledged: std::sync::atomic::AtomicU64,
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
            acknowledged: Default::default(),
            assignments: Default::default(),
        };
        bus.create_topics(settings).await?;
        Ok(bus)
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

    fn topics_of(&self, topics: &[String]) -> Vec<String> {
        topics.iter().map(|t| self.topic(t)).collect()
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
}

#[async_trait]
impl Transport for KafkaBus {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    /// On PostgreSQL, announces this process's publishes to the others (`NOTIFY`), so that
    /// their paused consumers of those topics resume at once.
    fn background(&self, db: &Db, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        match db {
            Db::Postgres(pool) => {
                let announce = self
                    .doorbell
                    .clone()
                    .announce(pool.clone(), shutdown.clone());
                vec![tokio::spawn(announce)]
            }
            Db::Sqlite(_) => Vec::new(),
        }
    }

    fn heard(&self, topics: &str) {
        self.doorbell.heard(topics);
    }

    /// One consumer of the group, started again a second after it fails, until shutdown.
    fn start_workers(
        self: Arc<Self>,
        consumed: Consumed<'_>,
        handler: Arc<dyn Handler>,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let (db, settings, shutdown) = (
            consumed.db.clone(),
            consumed.settings.clone(),
            shutdown.clone(),
        );
        vec![tokio::spawn(async move {
            let group = handler.group().to_owned();
            while !shutdown.is_cancelled() {
                let run = self.run_consumer(
                    db.clone(),
                    handler.clone(),
                    settings.clone(),
                    shutdown.clone(),
                );
                if let Err(error) = run.await {
                    tracing::error!(consumer = %group, error = format!("{error:#}"), "Kafka consumer stopped; restarting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })]
    }

    async fn publish_now(
        &self,
        _db: &Db,
        _outbox: &Outbox,
        events: &[Envelope],
    ) -> anyhow::Result<()> {
        self.publish(events).await
    }

    async fn relay_once(&self, db: &Db, batch: i64) -> anyhow::Result<usize> {
        KafkaBus::relay_once(self, db, batch).await
    }

    async fn lag(&self, db: &Db, group: &str, topics: &[String]) -> anyhow::Result<i64> {
        KafkaBus::lag(self, db, group, topics).await
    }

    async fn move_group(&self, db: &Db, group: &str, topics: &[String]) -> anyhow::Result<()> {
        KafkaBus::move_group(self, db, group, topics).await
    }

    async fn group_generation(&self, db: &Db, group: &str) -> anyhow::Result<i64> {
        generation(db, group).await
    }

    fn joining(&self, within: Duration) -> Vec<String> {
        self.assignments.joining(within)
    }

    fn unassigned_for(&self, group: &str) -> Option<Duration> {
        self.assignments.unassigned_for(group)
    }

    /// Kafka progresses when a broker acknowledges a message; a message on its way proves
    /// nothing (the broker may be gone).
    fn progress(&self) -> Progress {
        Progress {
            done: self.acknowledged.load(std::sync::atomic::Ordering::Relaxed),
            working: false,
        }
    }

    async fn ping(&self, _db: &Db) -> anyhow::Result<()> {
        KafkaBus::ping(self).await
    }
}
