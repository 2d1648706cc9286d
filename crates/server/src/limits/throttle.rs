//! Work done at most once a period, however many callers ask for it at once.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Lets one caller in per `period` to do a piece of shared work; callers that arrive while it
/// runs wait for it, and those within the period after it skip the work (what it produced is
/// theirs too).
pub struct Throttle {
    period: Duration,
    last: tokio::sync::Mutex<Option<Instant>>,
    done: AtomicU64,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: tokio::sync::Mutex::new(None),
            done: AtomicU64::new(0),
        }
    }

    /// Runs `work` unless it ran within the period.
    pub async fn run<F: Future<Output = ()>>(&self, work: impl FnOnce() -> F) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.period) {
            return;
        }
        work().await;
        *last = Some(Instant::now());
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the work ran.
    pub fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_at_once_run_the_work_once() {
        let throttle = Throttle::new(Duration::from_secs(60));
        let runs = AtomicU64::new(0);
        let callers = (0..20).map(|_| {
            throttle.run(|| async {
                tokio::task::yield_now().await;
                runs.fetch_add(1, Ordering::Relaxed);
            })
        });
        futures::future::join_all(callers).await;
        assert_eq!((runs.load(Ordering::Relaxed), throttle.count()), (1, 1));
    }
}
