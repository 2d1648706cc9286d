//! Password hashing as a bounded resource: a few dedicated threads, a short queue with a deadline.
//!
//! One argon2id hash holds 19 MiB for its whole run. Run on the blocking pool, a sign-up wave
//! spreads the hashes over hundreds of threads and as many allocator arenas, and each keeps its
//! 19 MiB; run here, at most `threads` hashes exist at once, always on the same threads, so the
//! memory they take is `threads × 19 MiB` however many callers arrive. They run at a lower CPU
//! priority than the request path, so a login flood cannot starve the rest of the API.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::password::{hash_password, verify_password};

/// How many hashes may run and wait at once.
#[derive(Debug, Clone, Copy)]
pub struct HashingLimits {
    /// Hashes running at once (threads); default: the number of cores.
    pub threads: usize,
    /// Callers waiting for a thread; one more is refused at once.
    pub queue: usize,
    /// How long a caller waits for a thread before it is refused.
    pub wait: Duration,
}

impl Default for HashingLimits {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            queue: 64,
            wait: Duration::from_secs(2),
        }
    }
}

/// `[password]`: the configuration section of [`HashingLimits`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// Password hashes computed at once (each holds 19 MiB); 0: the number of cores.
    pub hash_threads: usize,
    /// Sign-ups and logins waiting for a hashing thread; one more gets 503 `OVERLOADED`.
    pub hash_queue: usize,
    /// How long a sign-up or login waits for a hashing thread, in milliseconds.
    pub hash_wait_ms: u64,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        let defaults = HashingLimits::default();
        Self {
            hash_threads: 0,
            hash_queue: defaults.queue,
            hash_wait_ms: defaults.wait.as_millis() as u64,
        }
    }
}

impl PasswordConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            ("hash_threads", self.hash_threads as i128, 0, 256),
            ("hash_queue", self.hash_queue as i128, 0, 100_000),
            ("hash_wait_ms", self.hash_wait_ms.into(), 1, 60_000),
        ]
    }

    pub fn limits(&self) -> HashingLimits {
        let defaults = HashingLimits::default();
        HashingLimits {
            threads: match self.hash_threads {
                0 => defaults.threads,
                n => n,
            },
            queue: self.hash_queue,
            wait: Duration::from_millis(self.hash_wait_ms),
        }
    }
}

/// Hashing is saturated: the queue is full, or the caller's wait ran out. Retry later.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("password hashing is saturated; retry later")]
pub struct Overloaded;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads; cheap to clone. The threads end when the last handle is dropped.
#[derive(Clone)]
pub struct Hashing {
    jobs: mpsc::SyncSender<Job>,
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    limits: HashingLimits,
}

impl Hashing {
    pub fn new(limits: HashingLimits) -> Self {
        let threads = limits.threads.max(1);
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = queue.lock().expect("hashing queue").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawning a password hashing thread");
        }
        Self {
            jobs,
            permits: Arc::new(Semaphore::new(threads)),
            waiting: Arc::new(AtomicUsize::new(0)),
            limits: HashingLimits { threads, ..limits },
        }
    }

    /// An argon2id hash of `password` (PHC string).
    pub async fn hash(&self, password: String) -> Result<anyhow::Result<String>, Overloaded> {
        self.run(move || hash_password(&password)).await
    }

    /// Whether `password` matches `hash`.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, Overloaded> {
        self.run(move || verify_password(&password, &hash)).await
    }

    /// Runs `work` on a hashing thread once one is free. A caller that gives up (its request
    /// was dropped) does not stop work already handed over; the thread finishes it first.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Overloaded> {
        let permit = self.permit().await?;
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
            drop(permit);
        });
        // A permit guarantees a free slot: the channel holds `threads` jobs.
        self.jobs.try_send(job).map_err(|_| Overloaded)?;
        result.await.map_err(|_| Overloaded)
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let Some(_place) = Place::take(&self.waiting, self.limits.queue) else {
            metrics::counter!("stampede_password_hash_rejected_total", "why" => "queue_full")
                .increment(1);
            return Err(Overloaded);
        };
        let acquired =
            tokio::time::timeout(self.limits.wait, self.permits.clone().acquire_owned()).await;
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("stampede_password_hash_rejected_total", "why" => "wait")
                    .increment(1);
                Err(Overloaded)
            }
        }
    }
}

/// A caller's place in the queue, given back when it is dropped: when the caller gets a thread,
/// gives up, or is itself dropped while it waits (its client went away, its request timed out).
struct Place(Arc<AtomicUsize>);

impl Place {
    /// A place, unless `queue` callers already wait.
    fn take(waiting: &Arc<AtomicUsize>, queue: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < queue).then_some(n + 1)
            })
            .ok()?;
        Some(Self(waiting.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives the calling thread a lower CPU priority (nice 10): a wave of hashes still uses every
/// idle cycle, but the threads that answer requests (and `/health/live`) run first.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; on Linux, `who = 0` with PRIO_PROCESS names
    // the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

impl Default for Hashing {
    fn default() -> Self {
        Self::new(HashingLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_beyond_the_threads_and_the_queue_are_refused_at_once() {
        let hashing = Hashing::new(HashingLimits {
            threads: 1,
            queue: 1,
            wait: Duration::from_secs(30),
        });
        let busy = Arc::new(std::sync::Barrier::new(2));
        let held = busy.clone();
        let running = tokio::spawn({
            let hashing = hashing.clone();
            async move { hashing.run(move || held.wait()).await }
        });
        while hashing.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let queued = tokio::spawn({
            let hashing = hashing.clone();
            async move { hashing.run(|| 7).await }
        });
        while hashing.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(hashing.run(|| 8).await, Err(Overloaded)));
        busy.wait();
        running.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 7, "the queued caller ran");
    }

    /// Holds `hashing`'s only thread until the sender is used or dropped.
    async fn busy(
        hashing: &Hashing,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<Result<(), std::sync::mpsc::RecvError>, Overloaded>>,
    ) {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let hashing = hashing.clone();
            async move { hashing.run(move || gate.recv()).await }
        });
        while hashing.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        (release, running)
    }

    #[tokio::test]
    async fn a_caller_dropped_while_it_waits_gives_its_place_back() {
        let hashing = Hashing::new(HashingLimits {
            threads: 1,
            queue: 4,
            wait: Duration::from_secs(30),
        });
        let (release, running) = busy(&hashing).await;
        for _ in 0..4 {
            let waiters: Vec<_> = (0..4)
                .map(|_| {
                    let hashing = hashing.clone();
                    tokio::spawn(async move { hashing.run(|| ()).await })
                })
                .collect();
            while hashing.waiting.load(Ordering::Acquire) < 4 {
                tokio::task::yield_now().await;
            }
            for waiter in waiters {
                waiter.abort();
                let _ = waiter.await;
            }
        }
        assert_eq!(
            hashing.waiting.load(Ordering::Acquire),
            0,
            "every place came back"
        );
        let queued = tokio::spawn({
            let hashing = hashing.clone();
            async move { hashing.run(|| 9).await }
        });
        while hashing.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        running.await.unwrap().unwrap().unwrap();
        assert_eq!(
            queued.await.unwrap().unwrap(),
            9,
            "a new caller still queues"
        );
    }

    #[tokio::test]
    async fn a_caller_that_waits_past_its_deadline_is_refused() {
        let hashing = Hashing::new(HashingLimits {
            threads: 1,
            queue: 8,
            wait: Duration::from_millis(50),
        });
        let (release, running) = busy(&hashing).await;
        assert!(matches!(hashing.run(|| ()).await, Err(Overloaded)));
        release.send(()).unwrap();
        running.await.unwrap().unwrap().unwrap();
        let hash = hashing.hash("s3cret".into()).await.unwrap().unwrap();
        assert!(hashing.verify("s3cret".into(), hash).await.unwrap());
    }
}
