//! A consumer's membership of its group: left on a thread of its own when the last handle
//! goes, and resumed (woken) after a pause.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    error::KafkaResult,
};
use tokio::sync::oneshot;

use super::groups::real_offsets;
use super::{LEAVE_WAIT, NETWORK_TIMEOUT};

/// A consumer's membership of its Kafka group. Leaving it (librdkafka's close) waits on the
/// broker and has been seen upstream never to return (rust-rdkafka issues 509 and 611), so it
/// happens on a thread of its own: a leave that hangs holds up neither the runtime's threads
/// (a watchdog restart drops a consumer) nor the process's exit.
pub(super) struct Member(pub(super) Option<Arc<StreamConsumer>>);

impl Member {
    /// Leaves the group, waiting at most [`LEAVE_WAIT`] (on shutdown, so that the group's
    /// partitions move to the other instances now rather than when the session runs out).
    pub(super) async fn leave(mut self) {
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
pub(super) fn leave_aside(consumer: Arc<StreamConsumer>) -> Option<oneshot::Receiver<()>> {
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
pub(super) fn resume(consumer: &Arc<StreamConsumer>) -> KafkaResult<()> {
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

/// Since when each consumer group of this process has had no partitions (joining, or left
/// without any by a rebalance): what tells a wedged group from a slow one, whose member holds
/// its partitions while it works.
#[derive(Default)]
pub(crate) struct Assignments(Mutex<HashMap<String, Seen>>);

/// How long a consumer's first join may take before it is suspected of being wedged.
const FIRST_JOIN: Duration = Duration::from_secs(15);

/// What is known of one group's consumer here.
#[derive(Clone, Copy)]
struct Seen {
    /// When it joined.
    joined_at: Instant,
    /// Since when it has held no partitions; `None` while it holds some.
    unassigned_since: Option<Instant>,
    /// Whether it has held partitions since it joined.
    ever_assigned: bool,
}

impl Assignments {
    /// Notes whether `group`'s consumer holds partitions now.
    pub(super) fn saw(&self, group: &str, assigned: bool) {
        let mut groups = self.0.lock().expect("assignments lock");
        let Some(seen) = groups.get_mut(group) else {
            return;
        };
        match (assigned, seen.unassigned_since) {
            (true, Some(at)) => {
                let waited_ms = at.elapsed().as_millis() as u64;
                tracing::info!(
                    consumer = group,
                    waited_ms,
                    "consumer holds partitions of its group"
                );
                seen.unassigned_since = None;
                seen.ever_assigned = true;
            }
            (false, None) => seen.unassigned_since = Some(Instant::now()),
            _ => {}
        }
    }

    /// Notes that a consumer of `group` has just joined: it holds no partitions yet.
    pub(super) fn joined(&self, group: &str) {
        let now = Instant::now();
        let seen = Seen {
            joined_at: now,
            unassigned_since: Some(now),
            ever_assigned: false,
        };
        self.0
            .lock()
            .expect("assignments lock")
            .insert(group.to_owned(), seen);
    }

    /// Forgets `group`'s consumer (stopped). A consumer aborted by the watchdog never gets
    /// here, which is why [`Self::joined`] starts afresh.
    pub(super) fn stopped(&self, group: &str) {
        self.0.lock().expect("assignments lock").remove(group);
    }

    /// How long `group`'s consumer has held no partitions; `None` while it holds some or runs
    /// no consumer here. A consumer that has not held any since it joined is first given
    /// [`FIRST_JOIN`] (a join takes seconds, longer on a loaded machine) and counted from then:
    /// only a member that lost its partitions, or never got any in that time, is suspect.
    pub(crate) fn unassigned_for(&self, group: &str) -> Option<Duration> {
        let groups = self.0.lock().expect("assignments lock");
        let seen = groups.get(group)?;
        let since = seen.unassigned_since?;
        match seen.ever_assigned {
            true => Some(since.elapsed()),
            false => seen.joined_at.elapsed().checked_sub(FIRST_JOIN),
        }
    }

    /// Groups whose consumer joined less than `within` ago and has held no partitions yet.
    pub(crate) fn joining(&self, within: Duration) -> Vec<String> {
        let groups = self.0.lock().expect("assignments lock");
        let mut joining: Vec<String> = groups
            .iter()
            .filter(|(_, seen)| !seen.ever_assigned && seen.joined_at.elapsed() < within)
            .map(|(group, _)| group.clone())
            .collect();
        joining.sort_unstable();
        joining
    }
}
