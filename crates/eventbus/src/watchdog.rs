//! A consumer that stops making progress while its group has lag is reported — a warning, the
//! gauge `stampede_consumer_stalled`, [`crate::EventBus::stalled`] — and restarted by its
//! process: its workers are dropped (a Kafka consumer leaves its group) and started afresh.
//! When a restart did not help either, the broker is keeping the group from forming: the group
//! moves to a fresh Kafka group id that starts where it stopped ([`EventBus::move_group`]), and
//! the consumers of every process follow it when they see the move.
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
/// and no event handled for `bus.settings.stall_after`.
pub(crate) async fn supervise(
    bus: EventBus,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) {
    let group = handler.group().to_owned();
    let topics = handler.topics();
    let stall_after = bus.settings().stall_after;
    let every = (stall_after / 4).max(Duration::from_millis(20));
    let last = Arc::new(Mutex::new(Instant::now()));
    let watched: Arc<dyn Handler> = Arc::new(Watched {
        inner: handler,
        last: last.clone(),
    });
    let generation = || async { bus.group_generation(&group).await.unwrap_or(-1) };
    let mut joined = generation().await;
    let mut workers = bus.start_workers(watched.clone(), &shutdown);
    // When the workers were last (re)started: a stall is reported until they handle an event.
    let mut started = Instant::now();
    // Whether the workers were restarted for a stall and have handled nothing since.
    let mut restarted_in_vain = false;
    // When the lag was last found 0: an idle group is asked again only a stall period later
    // (each ask costs the broker a request per partition).
    let mut caught_up_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
        let current = generation().await;
        if current > joined {
            tracing::info!(consumer = %group, generation = current, "following the consumer group to its new Kafka group id");
            stop(workers).await;
            joined = current;
            workers = bus.start_workers(watched.clone(), &shutdown);
            started = Instant::now();
            continue;
        }
        let handled = *last.lock().expect("progress lock");
        let quiet = handled.max(started).elapsed();
        if quiet < stall_after {
            if handled > started {
                mark(&bus, &group, false);
                restarted_in_vain = false;
            }
            continue;
        }
        if caught_up_at.is_some_and(|at| at.elapsed() < stall_after) {
            continue;
        }
        match bus.lag(&group, &topics).await {
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
                mark(&bus, &group, true);
                counter!("stampede_consumer_restarts_total", "consumer" => group.clone())
                    .increment(1);
                stop(workers).await;
                if restarted_in_vain {
                    if let Err(error) = bus.move_group(&group, &topics).await {
                        tracing::warn!(consumer = %group, error = format!("{error:#}"), "cannot move the consumer group");
                    }
                    joined = generation().await;
                }
                workers = bus.start_workers(watched.clone(), &shutdown);
                started = Instant::now();
                restarted_in_vain = true;
            }
            Err(error) => {
                tracing::warn!(consumer = %group, error = format!("{error:#}"), "cannot measure consumer lag")
            }
        }
    }
    for worker in workers {
        let _ = worker.await;
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
