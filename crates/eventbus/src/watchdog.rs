//! A consumer that stops making progress while its group has lag is reported — a warning, the
//! gauge `stampede_consumer_stalled`, [`crate::EventBus::stalled`] — and restarted by its
//! process: its workers are dropped (a Kafka consumer leaves its group) and started afresh.
//! When a restart did not help either, the broker is keeping the group from forming: the group
//! moves to a fresh Kafka group id that starts where it stopped ([`EventBus::move_group`]), and
//! the consumers of every process follow it when they see the move.
//!
//! A Kafka consumer that holds no partitions is not waited for that long: once it has had none
//! for [`WEDGED_AFTER`] while its group has lag, and the lag has not gone down over another
//! [`WEDGED_AFTER`] (so no other member is consuming it), the group is wedged (a join that
//! never completes after a broker outage: the broker waits for members that are gone) and is
//! moved at once. A slow handler
//! is never taken for one: its consumer holds its partitions while it works.
//!
//! Lag costs the broker a request per partition to measure, so a quiet group whose lag was
//! found 0 is asked again only a stall period later: an idle deployment stays idle, and a
//! group that stalls right after is reported within two stall periods.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use db::Tx;
use events::Envelope;
use metrics::{counter, gauge};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{bus::EventBus, consumer::Handler};

impl EventBus {
    /// Starts the workers of `handler`'s consumer group in this process, under a watchdog that
    /// restarts them when the group has lag and they stop handling events
    /// ([`BusSettings::stall_after`]).
    pub fn spawn_consumer(
        &self,
        handler: Arc<dyn Handler>,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        self.inner
            .groups
            .lock()
            .expect("group registry lock")
            .push((handler.group().to_owned(), handler.topics()));
        vec![tokio::spawn(supervise(
            self.clone(),
            handler,
            shutdown.clone(),
        ))]
    }
}

/// How long a consumer may hold no partitions, while its group has lag, before the lag is
/// checked again and the group found wedged if nobody consumed it meanwhile.
pub(crate) const WEDGED_AFTER: Duration = Duration::from_secs(4);

/// A handler that notes when it last handled an event.
struct Watched {
    inner: Arc<dyn Handler>,
    last: Arc<Mutex<Instant>>,
}

#[async_trait]
impl Handler for Watched {
    fn group(&self) -> &str {
        self.inner.group()
    }

    fn topics(&self) -> Vec<String> {
        self.inner.topics()
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let handled = self.inner.handle(tx, event).await;
        if handled.is_ok() {
            *self.last.lock().expect("progress lock") = Instant::now();
        }
        handled
    }

    fn batch_limit(&self) -> usize {
        self.inner.batch_limit()
    }
}

/// Runs `handler`'s workers until `shutdown`, restarting them whenever the group has had lag
/// and no event handled for `bus.settings.stall_after`, or its consumer here has been wedged
/// without partitions.
pub(crate) async fn supervise(
    bus: EventBus,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) {
    let group = handler.group().to_owned();
    let stall_after = bus.settings().stall_after;
    let last = Arc::new(Mutex::new(Instant::now()));
    let watched: Arc<dyn Handler> = Arc::new(Watched {
        inner: handler,
        last: last.clone(),
    });
    let mut workers = Workers::start(&bus, watched, &shutdown).await;
    // A look at least every second: reading this process's own state costs nothing, and a
    // wedged consumer is noticed within seconds; the broker is asked only as described above,
    // and the database whether another process moved the group as often as before the looks
    // were this frequent.
    let every = (stall_after / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let moves_every = (stall_after / 4).max(Duration::from_millis(20));
    let mut moves_seen_at = Instant::now();
    // When the lag was last found 0: an idle group is asked again only a stall period later
    // (each ask costs the broker a request per partition).
    let mut caught_up_at: Option<Instant> = None;
    // The lag seen when the consumer was first found without partitions, and when.
    let mut unassigned_lag: Option<(i64, Instant)> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
        if moves_seen_at.elapsed() >= moves_every {
            moves_seen_at = Instant::now();
            if workers.follow_a_moved_group().await {
                continue;
            }
        }
        if bus
            .unassigned_for(&group)
            .is_some_and(|d| d >= WEDGED_AFTER)
        {
            if bus.wedged_within(Duration::from_secs(60)) && !workers.restarted_in_vain {
                // Another group of this process was just wedged: the broker came back without
                // the members it waits for, and this group, without partitions as long, is
                // waiting for the same (an idle one would be noticed only once events come).
                tracing::warn!(consumer = %group, "consumer wedged like another group of this process; moving it");
                workers.restart(true).await;
                unassigned_lag = None;
                continue;
            }
            match (bus.lag(&group, &workers.topics).await, unassigned_lag) {
                (Ok(lag), Some((before, at))) if lag > 0 && lag >= before => {
                    if at.elapsed() >= WEDGED_AFTER {
                        tracing::warn!(consumer = %group, lag, "consumer wedged: it holds no partitions and nobody consumes its group's events; moving it");
                        bus.note_wedged();
                        workers.restart(true).await;
                        unassigned_lag = None;
                    }
                }
                (Ok(lag), _) if lag > 0 => unassigned_lag = Some((lag, Instant::now())),
                (Ok(_), _) => unassigned_lag = None,
                // The broker is likely away (that is how consumers lose their partitions): said
                // elsewhere, and checked again in a second.
                (Err(error), _) => {
                    tracing::debug!(consumer = %group, error = format!("{error:#}"), "cannot measure consumer lag")
                }
            }
            continue;
        }
        unassigned_lag = None;
        let handled = *last.lock().expect("progress lock");
        let quiet = handled.max(workers.started).elapsed();
        if quiet < stall_after {
            if handled > workers.started {
                mark(&bus, &group, false);
                workers.restarted_in_vain = false;
            }
            continue;
        }
        if caught_up_at.is_some_and(|at| at.elapsed() < stall_after) {
            continue;
        }
        match bus.lag(&group, &workers.topics).await {
            Ok(0) => {
                caught_up_at = Some(Instant::now());
                mark(&bus, &group, false)
            }
            Ok(lag) => {
                tracing::warn!(
                    consumer = %group,
                    lag,
                    quiet_secs = quiet.as_secs(),
                    "consumer stalled: events are waiting and none was handled; restarting it"
                );
                workers.restart(false).await;
            }
            Err(error) => {
                tracing::warn!(consumer = %group, error = format!("{error:#}"), "cannot measure consumer lag")
            }
        }
    }
    workers.finish().await;
}

/// One group's workers in this process, and what the watchdog knows of their restarts.
struct Workers<'a> {
    bus: &'a EventBus,
    handler: Arc<dyn Handler>,
    group: String,
    topics: Vec<String>,
    shutdown: &'a CancellationToken,
    running: Vec<JoinHandle<()>>,
    /// The group's Kafka generation the workers joined.
    joined: i64,
    /// When the workers were last (re)started: a stall is reported until they handle an event.
    started: Instant,
    /// Whether the workers were restarted for a stall and have handled nothing since.
    restarted_in_vain: bool,
}

impl<'a> Workers<'a> {
    async fn start(
        bus: &'a EventBus,
        handler: Arc<dyn Handler>,
        shutdown: &'a CancellationToken,
    ) -> Self {
        let group = handler.group().to_owned();
        let joined = bus.group_generation(&group).await.unwrap_or(-1);
        Self {
            running: bus.start_workers(handler.clone(), shutdown),
            topics: handler.topics(),
            bus,
            handler,
            group,
            shutdown,
            joined,
            started: Instant::now(),
            restarted_in_vain: false,
        }
    }

    /// Restarts the workers on the group's new Kafka group id when another process moved it;
    /// whether it had moved.
    async fn follow_a_moved_group(&mut self) -> bool {
        let current = self.bus.group_generation(&self.group).await.unwrap_or(-1);
        if current <= self.joined {
            return false;
        }
        tracing::info!(consumer = %self.group, generation = current, "following the consumer group to its new Kafka group id");
        self.joined = current;
        self.start_again().await;
        true
    }

    /// Reports the group stalled and starts its workers afresh; when a restart already did not
    /// help, or `wedged` (the broker would not let it join: rejoining the same group waits
    /// for the same members), moves the group to a fresh Kafka group id first.
    async fn restart(&mut self, wedged: bool) {
        mark(self.bus, &self.group, true);
        counter!("stampede_consumer_restarts_total", "consumer" => self.group.clone()).increment(1);
        stop(std::mem::take(&mut self.running)).await;
        if self.restarted_in_vain || wedged {
            if let Err(error) = self.bus.move_group(&self.group, &self.topics).await {
                tracing::warn!(consumer = %self.group, error = format!("{error:#}"), "cannot move the consumer group");
            }
            self.joined = self.bus.group_generation(&self.group).await.unwrap_or(-1);
        }
        self.start_again().await;
        self.restarted_in_vain = true;
    }

    async fn start_again(&mut self) {
        stop(std::mem::take(&mut self.running)).await;
        self.running = self.bus.start_workers(self.handler.clone(), self.shutdown);
        self.started = Instant::now();
    }

    /// Waits for the workers to finish (after shutdown).
    async fn finish(self) {
        for worker in self.running {
            let _ = worker.await;
        }
    }
}

fn mark(bus: &EventBus, group: &str, stalled: bool) {
    bus.set_stalled(group, stalled);
    gauge!("stampede_consumer_stalled", "consumer" => group.to_owned()).set(if stalled {
        1.0
    } else {
        0.0
    });
}

/// Drops the workers; a transaction one of them had open rolls back.
async fn stop(workers: Vec<JoinHandle<()>>) {
    for worker in &workers {
        worker.abort();
    }
    for worker in workers {
        let _ = worker.await;
    }
}
