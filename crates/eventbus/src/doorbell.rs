//! The doorbell: how a Kafka consumer group that stopped fetching learns there is something to
//! fetch again.
//!
//! A group that has received nothing for a while pauses its partitions, so an idle deployment
//! costs the broker no fetches (eleven groups each fetching once per fetch wait kept a Tansu
//! broker at a full core with no traffic). Every acknowledged publish rings for its topics: at
//! once in the publishing process, and through PostgreSQL `NOTIFY stampede_bus` in every other.
//! A paused group resumes when its topics ring. A ring that is lost (a `LISTEN` connection
//! being re-made, a process killed between the acknowledgement and the ring) only delays: a
//! paused group looks again every [`LOOK_AGAIN`].

use std::{
    collections::{BTreeSet, HashMap},
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use db::sqlx::{self, PgPool};
use tokio::{
    sync::{futures::Notified, Notify},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// A group that heard a ring for one of its topics this recently does not pause: the event
/// rung for may not have been fetched yet.
const RECENT_RING: Duration = Duration::from_secs(2);

/// How often a paused group fetches anyway, in case a ring was lost.
pub(crate) const LOOK_AGAIN: Duration = Duration::from_secs(30);

/// How long rings gather before they are announced to other processes in one `NOTIFY`: at most
/// one per this interval under load, at the cost of this much delay for a paused group there.
/// Groups that heard a ring do not pause for [`RECENT_RING`], far longer, so nothing is missed.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(20);

/// One topic's bell.
#[derive(Default)]
struct Bell {
    rung: Notify,
    /// When it last rang, in milliseconds since the doorbell was made (0: never).
    last_rung_ms: AtomicU64,
}

/// The doorbells of one process, one per topic.
pub(crate) struct Doorbell {
    /// Prefix of the Kafka topic names (a deployment's rings are told apart from another's
    /// sharing the database by it).
    prefix: String,
    bells: HashMap<String, Bell>,
    since: Instant,
    /// Topics rung here and not yet announced to other processes.
    unannounced: Mutex<BTreeSet<String>>,
    announce: Notify,
}

impl Doorbell {
    pub(crate) fn new<'a>(prefix: &str, topics: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            bells: topics
                .into_iter()
                .map(|t| (t.to_owned(), Bell::default()))
                .collect(),
            since: Instant::now(),
            unannounced: Mutex::default(),
            announce: Notify::new(),
        }
    }

    /// Rings for `topics` (unprefixed names), whose events the bus has just acknowledged.
    pub(crate) fn ring<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        let mut unannounced = self.unannounced.lock().expect("doorbell lock");
        for topic in topics {
            if self.ring_here(topic) && !unannounced.contains(topic) {
                unannounced.insert(topic.to_owned());
            }
        }
        drop(unannounced);
        self.announce.notify_one();
    }

    /// Rings for the topics another process announced (`NOTIFY` payload: prefixed names,
    /// comma-separated); names of another deployment are ignored.
    pub(crate) fn heard(&self, payload: &str) {
        for topic in payload.split(',') {
            if let Some(topic) = topic.strip_prefix(self.prefix.as_str()) {
                self.ring_here(topic);
            }
        }
    }

    fn ring_here(&self, topic: &str) -> bool {
        let Some(bell) = self.bells.get(topic) else {
            return false;
        };
        let now = self.since.elapsed().as_millis() as u64 + 1;
        bell.last_rung_ms.store(now, Ordering::Relaxed);
        bell.rung.notify_waiters();
        true
    }

    /// Starts listening for `topics`, or `None` when one rang within [`RECENT_RING`] (the
    /// event rung for may not have been fetched yet: a group should not pause then). A ring
    /// after this call is not missed.
    pub(crate) fn listen(&self, topics: &[String]) -> Option<Listening<'_>> {
        let bells: Vec<&Bell> = topics.iter().filter_map(|t| self.bells.get(t)).collect();
        let mut waits: Vec<_> = bells.iter().map(|b| Box::pin(b.rung.notified())).collect();
        for wait in &mut waits {
            wait.as_mut().enable();
        }
        let now = self.since.elapsed().as_millis() as u64 + 1;
        let recent = RECENT_RING.as_millis() as u64;
        let rang_lately = bells.iter().any(|b| {
            let last = b.last_rung_ms.load(Ordering::Relaxed);
            last != 0 && now.saturating_sub(last) < recent
        });
        (!rang_lately).then_some(Listening { waits })
    }

    /// Announces this process's rings to the others until `shutdown`, gathering them for
    /// [`ANNOUNCE_EVERY`]. A failed `NOTIFY` is logged and dropped (see the module doc).
    pub(crate) async fn announce(self: Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        let mut shutdown = pin!(shutdown.cancelled_owned());
        loop {
            tokio::select! {
                () = self.announce.notified() => {}
                () = &mut shutdown => return,
            }
            let topics = std::mem::take(&mut *self.unannounced.lock().expect("doorbell lock"));
            if !topics.is_empty() {
                let payload = topics
                    .iter()
                    .map(|t| format!("{}{t}", self.prefix))
                    .collect::<Vec<_>>()
                    .join(",");
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(crate::transport::BUS_CHANNEL)
                    .bind(payload)
                    .execute(&pool)
                    .await;
                if let Err(error) = sent {
                    tracing::debug!(%error, "announcing published topics failed");
                }
            }
            tokio::time::sleep(ANNOUNCE_EVERY).await;
        }
    }
}

/// Waiting for a ring ([`Doorbell::listen`]).
pub(crate) struct Listening<'a> {
    waits: Vec<Pin<Box<Notified<'a>>>>,
}

impl Listening<'_> {
    /// Returns when one of the topics rings, or after `timeout`.
    pub(crate) async fn rung(self, timeout: Duration) {
        if self.waits.is_empty() {
            tokio::time::sleep(timeout).await;
        } else {
            let _ = tokio::time::timeout(timeout, futures::future::select_all(self.waits)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_ring_for_a_topic_wakes_the_group_that_waits_on_it() {
        let bell = Arc::new(Doorbell::new("p.", ["a", "b"]));
        let waiting = tokio::spawn({
            let bell = bell.clone();
            async move {
                let started = tokio::time::Instant::now();
                let listening = bell.listen(&topics(&["b"])).unwrap();
                listening.rung(Duration::from_secs(60)).await;
                started.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        bell.ring(["a"]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "a ring for another topic woke it");
        bell.heard("q.b,other");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "another deployment's ring woke it");
        bell.heard("x,p.b");
        let waited = waiting.await.unwrap();
        assert_eq!(waited, Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_that_heard_a_ring_lately_does_not_pause() {
        let bell = Doorbell::new("", ["a"]);
        bell.ring(["a"]);
        assert!(bell.listen(&topics(&["a"])).is_none());
        tokio::time::sleep(RECENT_RING).await;
        let started = tokio::time::Instant::now();
        let listening = bell.listen(&topics(&["a"])).expect("the ring is old now");
        listening.rung(Duration::from_secs(60)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(60),
            "woke without a ring"
        );
    }
}
