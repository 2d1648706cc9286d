//! The `kafka://` bus (rdkafka): the relay publishes outbox rows with an idempotent producer
//! (`acks=all`, key → partition); each consumer group reads with manual offset commits that
//! happen only after the effect's database transaction has committed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::BaseConsumer,
    error::RDKafkaErrorCode,
    producer::{FutureProducer, Producer as _},
    ClientConfig,
};

use crate::doorbell::Doorbell;
use crate::BusSettings;

mod consume;
mod groups;
mod member;
mod produce;

pub(crate) use groups::generation;

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
