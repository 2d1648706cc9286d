//! Group commit for [`EventBus::publish_now`](crate::EventBus::publish_now) on the db:// bus:
//! concurrent callers share one transaction instead of queueing for the writer one by one.
//!
//! Each caller queues its events, then waits for the leader lock. Whoever holds it writes
//! everything queued so far in one transaction and hands each caller the outcome; a caller
//! that gets the lock after its events were written just takes its outcome. Per-key order
//! holds: events are written in the order they were queued.

use std::sync::Mutex;

use db::Db;
use events::Envelope;
use tokio::sync::oneshot;

use crate::outbox::Outbox;

type Waiter = (Vec<Envelope>, oneshot::Sender<Result<(), String>>);

#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Waiter>>,
    leader: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    /// Returns once `events` are committed to the log (with whatever else was queued).
    pub(crate) async fn publish(
        &self,
        db: &Db,
        outbox: &Outbox,
        events: &[Envelope],
    ) -> anyhow::Result<()> {
        let (done, mut outcome) = oneshot::channel();
        self.queue
            .lock()
            .expect("group commit queue")
            .push((events.to_vec(), done));
        let leader = self.leader.lock().await;
        if let Ok(result) = outcome.try_recv() {
            return result.map_err(anyhow::Error::msg);
        }
        let waiters = std::mem::take(&mut *self.queue.lock().expect("group commit queue"));
        if !waiters.is_empty() {
            let (events, senders): (Vec<Vec<Envelope>>, Vec<_>) = waiters.into_iter().unzip();
            let batch: Vec<Envelope> = events.into_iter().flatten().collect();
            // Spawned, so that a caller that goes away mid-commit leaves no one unanswered.
            let (db, outbox) = (db.clone(), outbox.clone());
            let written = tokio::spawn(async move {
                let result = write(&db, &outbox, &batch)
                    .await
                    .map_err(|e| format!("{e:#}"));
                for done in senders {
                    let _ = done.send(result.clone());
                }
            });
            let _ = written.await;
        }
        drop(leader);
        outcome
            .await
            .map_err(|_| anyhow::anyhow!("the group commit dropped this caller's events"))?
            .map_err(anyhow::Error::msg)
    }
}

async fn write(db: &Db, outbox: &Outbox, events: &[Envelope]) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    outbox.append(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
}
