//! The bus's tunables, their defaults (the embedded deployment's), and the configuration
//! sections that set them (`[bus]`, `[kafka]`, `[consumer]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consumer::RetryPolicy;

/// Tunables of the bus.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// Partitions per topic: the db:// log's, and those of Kafka topics Stampede creates.
    pub partitions: u32,
    /// Prefix of Kafka topic and consumer-group names (tests give each run its own).
    pub topic_prefix: String,
    /// Topics created besides the design's (tests and tools).
    pub extra_topics: Vec<String>,
    /// Events per relay round and per consumer batch.
    pub batch_size: i64,
    /// Fallback polling interval; wake-ups are immediate when the commit is seen.
    pub poll_interval: Duration,
    /// Workers per consumer group in this process on the db:// bus (PostgreSQL; SQLite uses 1).
    pub workers: usize,
    pub retry: RetryPolicy,
    pub kafka_replication: i32,
    /// How long a Kafka fetch may wait for data. Brokers answer as soon as data arrives, but
    /// each consumer that is not paused costs the broker a fetch per interval, so a short wait
    /// is paid in broker CPU; Tansu waits the full time before answering, so there it is also
    /// the latency of each hop.
    pub kafka_fetch_wait: Duration,
    /// How long the Kafka producer gathers messages into a batch before it sends them
    /// (`linger.ms`): throughput under load against the latency of each publish.
    pub kafka_linger: Duration,
    /// This process's stable name in its Kafka consumer groups (`group.instance.id`, static
    /// membership): restarted under the same name it takes its partitions back at once, where
    /// an anonymous member must wait until the broker drops the one it replaced. Unique per
    /// running process; `None` for anonymous members.
    pub kafka_instance_id: Option<String>,
    /// Published outbox rows and dedupe records older than this are deleted; keep it longer
    /// than the Kafka topics' retention.
    pub retention: Duration,
    /// A consumer group with lag that has handled no event for this long is reported stalled
    /// and its workers in this process are restarted.
    pub stall_after: Duration,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            partitions: 8,
            topic_prefix: String::new(),
            extra_topics: Vec::new(),
            batch_size: 256,
            poll_interval: Duration::from_millis(500),
            workers: 2,
            retry: RetryPolicy::default(),
            kafka_replication: 1,
            kafka_fetch_wait: Duration::from_millis(50),
            kafka_linger: Duration::from_millis(2),
            kafka_instance_id: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            stall_after: Duration::from_secs(60),
        }
    }
}

/// `[bus]`: which bus, and how the db:// log is cut and polled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `db://` or `kafka://host:port,...`.
    pub url: String,
    /// Partitions per topic (db:// log and Kafka topics created at start).
    pub partitions: u32,
    /// Fallback polling interval of the relay and db:// consumers, in milliseconds.
    pub poll_interval_ms: u64,
    /// Chaos testing only: consumers run every event twice, rolling the first run back as a
    /// crash would.
    pub redeliver: bool,
}

/// `[kafka]`: the Kafka transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Replication factor of topics created at start.
    pub replication: i32,
    /// How long a fetch may wait for data, in milliseconds (broker load against latency).
    pub fetch_wait_ms: u64,
    /// How long the producer gathers messages into a batch, in milliseconds.
    pub linger_ms: u64,
    /// This process's stable name in consumer groups (static membership); unique per running
    /// process, kept across its restarts (a pod name, a host and slot).
    pub instance_id: Option<String>,
}

/// `[consumer]`: the consumer groups of this process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Workers per group in this process (db:// bus on PostgreSQL).
    pub workers: usize,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: u32,
    /// A group with waiting events that handles none for this long is reported stalled and
    /// restarted, in seconds.
    pub stall_secs: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        let defaults = BusSettings::default();
        Self {
            url: "db://".to_owned(),
            partitions: defaults.partitions,
            poll_interval_ms: defaults.poll_interval.as_millis() as u64,
            redeliver: defaults.retry.redeliver,
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        let defaults = BusSettings::default();
        Self {
            replication: defaults.kafka_replication,
            fetch_wait_ms: defaults.kafka_fetch_wait.as_millis() as u64,
            linger_ms: defaults.kafka_linger.as_millis() as u64,
            instance_id: defaults.kafka_instance_id,
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        let defaults = BusSettings::default();
        Self {
            workers: defaults.workers,
            max_attempts: defaults.retry.max_attempts,
            stall_secs: defaults.stall_after.as_secs(),
        }
    }
}

impl BusConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            ("partitions", self.partitions.into(), 1, 1_024),
            ("poll_interval_ms", self.poll_interval_ms.into(), 10, 60_000),
        ]
    }
}

impl KafkaConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            ("replication", self.replication.into(), 1, 16),
            ("fetch_wait_ms", self.fetch_wait_ms.into(), 1, 5_000),
            ("linger_ms", self.linger_ms.into(), 0, 60_000),
        ]
    }
}

impl ConsumerConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            ("workers", self.workers as i128, 1, 64),
            ("max_attempts", self.max_attempts.into(), 1, 100),
            ("stall_secs", self.stall_secs.into(), 1, 3_600),
        ]
    }
}

impl BusSettings {
    /// The settings the three sections make, topics and groups named under `topic_prefix`.
    pub fn configured(
        bus: &BusConfig,
        kafka: &KafkaConfig,
        consumer: &ConsumerConfig,
        topic_prefix: &str,
    ) -> Self {
        Self {
            partitions: bus.partitions,
            topic_prefix: topic_prefix.to_owned(),
            poll_interval: Duration::from_millis(bus.poll_interval_ms),
            workers: consumer.workers,
            retry: RetryPolicy {
                max_attempts: consumer.max_attempts,
                redeliver: bus.redeliver,
                ..RetryPolicy::default()
            },
            kafka_replication: kafka.replication,
            kafka_fetch_wait: Duration::from_millis(kafka.fetch_wait_ms),
            kafka_linger: Duration::from_millis(kafka.linger_ms),
            kafka_instance_id: kafka.instance_id.clone(),
            stall_after: Duration::from_secs(consumer.stall_secs),
            ..Self::default()
        }
    }
}
