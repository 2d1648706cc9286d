//! The bus's tunables, and their defaults (the embedded deployment's).

use std::time::Duration;

use crate::RetryPolicy;

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
