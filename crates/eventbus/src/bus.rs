//! The bus's face: what the rest of Stampede calls, the same whichever transport is behind it
//! ([`Transport`]).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::Utc;
use db::Db;
use events::Envelope;
use tokio::{
    sync::{watch, Notify},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::Handler,
    dblog,
    outbox::Outbox,
    settings::BusSettings,
    transport::{Consumed, Transport},
};

/// How long a consumer that holds no partitions yet counts as joining (after that a group may
/// have more members than partitions, and this one none).
pub const JOIN_GRACE: Duration = Duration::from_secs(30);

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) settings: BusSettings,
    pub(crate) outbox: Outbox,
    pub(crate) relay_wake: Arc<Notify>,
    pub(crate) log_tick: watch::Sender<u64>,
    pub(crate) transport: Arc<dyn Transport>,
    /// Consumer groups started in this process, with their topics.
    pub(crate) groups: Mutex<Vec<(String, Vec<String>)>>,
    /// Consumer groups of this process reported stalled (`watchdog.rs`).
    stalled: Mutex<std::collections::BTreeSet<String>>,
    /// When a consumer group of this process was last found wedged (`watchdog.rs`).
    wedged_at: Mutex<Option<Instant>>,
}

/// The bus of one process; cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    pub(crate) inner: Arc<Inner>,
}

impl EventBus {
    /// Connects the bus named by `url` (`db://` or `kafka://host:port,...`). A bus that is not
    /// compiled in fails here with an error naming its cargo feature.
    pub async fn connect(url: &str, db: Db, settings: BusSettings) -> anyhow::Result<Self> {
        let transport: Arc<dyn Transport> = if url == "db://" || url == "db:" {
            Arc::new(dblog::DbLog::default())
        } else if let Some(brokers) = url.strip_prefix("kafka://") {
            connect_kafka(brokers, &settings).await?
        } else {
            anyhow::bail!("unsupported bus URL {url:?} (expected db:// or kafka://host:port)")
        };
        let relay_wake = Arc::new(Notify::new());
        Ok(Self {
            inner: Arc::new(Inner {
                outbox: Outbox::new(settings.partitions, relay_wake.clone()),
                db,
                settings,
                relay_wake,
                log_tick: watch::channel(0).0,
                transport,
                groups: Mutex::default(),
                stalled: Mutex::default(),
                wedged_at: Mutex::default(),
            }),
        })
    }

    /// `db` or `kafka`.
    pub fn kind(&self) -> &'static str {
        self.inner.transport.kind()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The settings the bus was connected with.
    pub(crate) fn settings(&self) -> &BusSettings {
        &self.inner.settings
    }

    /// Notes whether `group` is stalled in this process ([`Self::stalled`]).
    pub(crate) fn set_stalled(&self, group: &str, stalled: bool) {
        let mut set = self.inner.stalled.lock().expect("stalled set lock");
        if stalled {
            set.insert(group.to_owned());
        } else {
            set.remove(group);
        }
    }

    /// Consumer groups of this process still joining: their consumer started less than
    /// [`JOIN_GRACE`] ago and holds no partitions yet (on Kafka; a db:// worker needs no join).
    /// Events for them wait until they have joined, so a process is not ready meanwhile.
    pub fn joining(&self) -> Vec<String> {
        self.inner.transport.joining(JOIN_GRACE)
    }

    /// Notes that a consumer group of this process was found wedged now.
    pub(crate) fn note_wedged(&self) {
        *self.inner.wedged_at.lock().expect("wedge lock") = Some(Instant::now());
    }

    /// Whether a consumer group of this process was found wedged within `within`: after a
    /// broker outage its other groups are likely wedged too.
    pub(crate) fn wedged_within(&self, within: Duration) -> bool {
        let wedged_at = self.inner.wedged_at.lock().expect("wedge lock");
        wedged_at.is_some_and(|at| at.elapsed() < within)
    }

    /// Consumer groups of this process that are stalled: events are waiting and their workers
    /// have handled none for [`BusSettings::stall_after`] (they are being restarted).
    pub fn stalled(&self) -> Vec<String> {
        let stalled = self.inner.stalled.lock().expect("stalled set lock");
        stalled.iter().cloned().collect()
    }

    /// The workers of `handler`'s group: db:// workers sharing partitions through row locks, or
    /// one Kafka consumer (restarted when it fails).
    pub(crate) fn start_workers(
        &self,
        handler: Arc<dyn Handler>,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let inner = &self.inner;
        let consumed = Consumed {
            db: &inner.db,
            settings: &inner.settings,
            log_tick: &inner.log_tick,
        };
        inner
            .transport
            .clone()
            .start_workers(consumed, handler, shutdown)
    }

    /// Publishes `events` now, outside any business transaction, and returns once the bus has
    /// them: acknowledged by Kafka (`acks=all`, no SQL), or committed to the db:// log (concurrent calls share one transaction). For
    /// hot paths whose only effect is the event (coupon issue requests); everything that changes
    /// state goes through the [`Outbox`] instead. Per-key order holds among events published
    /// this way by one process.
    pub async fn publish_now(&self, events: &[Envelope]) -> anyhow::Result<()> {
        let inner = &self.inner;
        inner
            .transport
            .publish_now(&inner.db, &inner.outbox, events)
            .await
    }

    /// [`Self::publish_now`], given up only when the bus is stuck: when it has completed no
    /// write, and has none under way, for `quiet`, or after `cap` in all. A publish queued
    /// behind healthy work (a busy database, a broker acknowledging other messages) waits for
    /// it; one in front of a bus that cannot be reached fails within `quiet`.
    pub async fn publish_unless_stuck(
        &self,
        events: &[Envelope],
        quiet: Duration,
        cap: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let publish = self.publish_now(events);
        tokio::pin!(publish);
        loop {
            let before = self.inner.transport.progress();
            let wait = quiet.min(cap.saturating_sub(started.elapsed()));
            if let Ok(published) = tokio::time::timeout(wait, &mut publish).await {
                return published;
            }
            let now = self.inner.transport.progress();
            if now == before && !now.working {
                anyhow::bail!("the bus completed nothing for {quiet:?}");
            }
            if started.elapsed() >= cap {
                anyhow::bail!("the bus was busy for {cap:?} and had not taken the event");
            }
        }
    }

    pub(crate) async fn relay_once(&self, batch: i64) -> anyhow::Result<usize> {
        self.inner.transport.relay_once(&self.inner.db, batch).await
    }

    /// Events written but not yet published.
    pub async fn backlog(&self) -> anyhow::Result<i64> {
        Ok(Outbox::backlog(&self.inner.db).await?)
    }

    /// Events published but not yet consumed by `group`.
    pub async fn lag(&self, group: &str, topics: &[String]) -> anyhow::Result<i64> {
        let transport = &self.inner.transport;
        transport
            .lag(&self.inner.db, group, topics)
            .await
            .with_context(|| format!("measuring the lag of {group} on {topics:?}"))
    }

    /// Gives `group` a fresh Kafka group id that starts where the current one stopped, for a
    /// group the broker will not form again (a no-op on db://, which has no groups to form).
    pub(crate) async fn move_group(&self, group: &str, topics: &[String]) -> anyhow::Result<()> {
        let transport = &self.inner.transport;
        transport.move_group(&self.inner.db, group, topics).await
    }

    /// How long this process's consumer of `group` has held no partitions (see
    /// [`Transport::unassigned_for`]).
    pub(crate) fn unassigned_for(&self, group: &str) -> Option<Duration> {
        self.inner.transport.unassigned_for(group)
    }

    /// How many times `group` has moved to a fresh Kafka group id (always 0 on db://).
    pub(crate) async fn group_generation(&self, group: &str) -> anyhow::Result<i64> {
        let transport = &self.inner.transport;
        transport.group_generation(&self.inner.db, group).await
    }

    /// Lag of every consumer group started in this process.
    pub async fn lags(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let groups = self
            .inner
            .groups
            .lock()
            .expect("group registry lock")
            .clone();
        let mut lags = Vec::with_capacity(groups.len());
        for (group, topics) in groups {
            let lag = self.lag(&group, &topics).await?;
            lags.push((group, lag));
        }
        Ok(lags)
    }

    /// Waits until the outbox is empty and every consumer group of this process has caught up
    /// (tests and benchmarks use it instead of sleeping).
    pub async fn wait_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // The outbox is read again after the lags, and must not have moved: a handler that
            // commits between the first read and the lags leaves its input consumed and its
            // output in the outbox, and the relay may publish that output before the second
            // read, to a group whose lag was already read. Once the lags are 0 no handler is in
            // flight, so an unmoved outbox means nothing is on its way.
            let (backlog, written) = Outbox::watermark(&self.inner.db).await?;
            let lags = self.lags().await?;
            let idle = backlog == 0
                && lags.iter().all(|(_, lag)| *lag == 0)
                && Outbox::watermark(&self.inner.db).await? == (backlog, written);
            if idle {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("bus not idle after {timeout:?}: backlog {backlog}, lag {lags:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Checks that the bus answers (readiness).
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.inner.transport.ping(&self.inner.db).await
    }

    /// Deletes published outbox rows and dedupe records older than the retention period (a
    /// redelivery can only come from events still in the outbox or the Kafka log).
    pub async fn prune(&self) -> anyhow::Result<u64> {
        let before = Utc::now() - self.inner.settings.retention;
        Ok(Outbox::prune(&self.inner.db, before).await?)
    }
}

#[cfg(feature = "kafka")]
async fn connect_kafka(
    brokers: &str,
    settings: &BusSettings,
) -> anyhow::Result<Arc<dyn Transport>> {
    let kafka = crate::kafka::KafkaBus::connect(brokers, settings)
        .await
        .with_context(|| format!("connecting to Kafka at {brokers}"))?;
    Ok(Arc::new(kafka))
}

#[cfg(not(feature = "kafka"))]
async fn connect_kafka(
    _brokers: &str,
    _settings: &BusSettings,
) -> anyhow::Result<Arc<dyn Transport>> {
    anyhow::bail!(
        "the kafka:// bus is not compiled into this binary: build it with the `kafka` cargo feature"
    )
}
