//! The seam between the bus's face ([`EventBus`](crate::EventBus)) and what differs between the buses: where a
//! publish goes, how the relay sends the outbox, how a group's workers consume, how lag is
//! measured. `db://` is [`DbLog`](crate::dblog::DbLog), `kafka://` is `kafka::KafkaBus`.

use std::sync::Arc;

use async_trait::async_trait;
use db::Db;
use events::Envelope;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{consumer::Handler, outbox::Outbox, settings::BusSettings};

/// The `NOTIFY` channel on which Kafka publishes are announced to other processes.
pub(crate) const BUS_CHANNEL: &str = "stampede_bus";

/// A transport's progress: `done` grows with every write it completes; `working` is true while
/// a write is under way that is known to be moving (a database transaction, not a message
/// waiting for a broker that may be gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub done: u64,
    pub working: bool,
}

/// What a transport's consumers are given by the bus.
pub(crate) struct Consumed<'a> {
    pub db: &'a Db,
    pub settings: &'a BusSettings,
    /// Ticks when events reach the db:// log (the relay, and `NOTIFY` from other processes).
    pub log_tick: &'a watch::Sender<u64>,
}

#[async_trait]
pub(crate) trait Transport: Send + Sync {
    /// `db` or `kafka`.
    fn kind(&self) -> &'static str;

    /// Tasks of this transport's own, started with the relay.
    fn background(&self, _db: &Db, _shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        Vec::new()
    }

    /// Another process says it published to `topics` (a comma-separated list).
    fn heard(&self, _topics: &str) {}

    /// The workers of `handler`'s consumer group in this process.
    fn start_workers(
        self: Arc<Self>,
        consumed: Consumed<'_>,
        handler: Arc<dyn Handler>,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>>;

    /// Publishes `events` outside any business transaction; returns once the bus has them.
    async fn publish_now(
        &self,
        db: &Db,
        outbox: &Outbox,
        events: &[Envelope],
    ) -> anyhow::Result<()>;

    /// Sends up to `batch` outbox rows on; how many went.
    async fn relay_once(&self, db: &Db, batch: i64) -> anyhow::Result<usize>;

    /// Events published but not yet consumed by `group` over `topics`.
    async fn lag(&self, db: &Db, group: &str, topics: &[String]) -> anyhow::Result<i64>;

    /// Moves `group` to a fresh broker-side group (only Kafka has those).
    async fn move_group(&self, _db: &Db, _group: &str, _topics: &[String]) -> anyhow::Result<()> {
        Ok(())
    }

    /// How many times `group` has moved (0 where groups never move).
    async fn group_generation(&self, _db: &Db, _group: &str) -> anyhow::Result<i64> {
        Ok(0)
    }

    /// What the bus has done so far, as a mark that moves whenever it completes a write: a
    /// publish queued behind work that moves is waited for, one behind nothing that moves is
    /// given up ([`EventBus::publish_unless_stuck`](crate::EventBus::publish_unless_stuck)).
    fn progress(&self) -> Progress;

    /// How long this process's consumer of `group` has held no partitions (a member that
    /// cannot join, or was left without any); `None` where consumers always have their
    /// partitions (db://, whose workers share them by row locks) or while it holds some.
    fn unassigned_for(&self, _group: &str) -> Option<std::time::Duration> {
        None
    }

    /// Consumer groups of this process whose consumer joined less than `within` ago and holds
    /// no partitions yet (none where consumers need no join).
    fn joining(&self, _within: std::time::Duration) -> Vec<String> {
        Vec::new()
    }

    /// Whether the bus answers.
    async fn ping(&self, db: &Db) -> anyhow::Result<()>;
}
