//! How a partition's events are run: one transaction for the run of events that succeed, the
//! partition's claim held from the first event to the commit (so a failure is counted before
//! any other worker can try the event again), a failing event retried alone with backoff and
//! dead-lettered after its last attempt.

use async_trait::async_trait;
use db::Tx;
use metrics::counter;
use tokio_util::sync::CancellationToken;

use super::{
    apply, apply_bare, dead_letter, event_span, failed, handled, Delivery, Handler, Outcome,
    RetryPolicy,
};

/// A worker's hold on a partition, and what is recorded there.
pub(crate) struct Claim {
    /// Events at or before this position are done.
    pub done: i64,
    /// Failed attempts at the event after `done` so far (by any worker).
    pub attempts: u32,
    /// The error of the last failed attempt, when recorded.
    pub last_error: Option<String>,
}

/// Where a bus keeps a partition's progress. The db:// bus claims and advances its offset row
/// inside the effect's transaction (so attempts are counted across workers and restarts);
/// Kafka commits offsets after the transaction and counts attempts in the consumer instead.
#[async_trait]
pub(crate) trait Checkpoint: Send + Sync {
    /// Claims the partition in `tx`; `None` when another worker holds it.
    async fn claim(&self, tx: &mut Tx) -> anyhow::Result<Option<Claim>>;
    /// Records in `tx` that every event up to `position` is done.
    async fn advance(&self, tx: &mut Tx, position: i64) -> anyhow::Result<()>;
    /// Records in `tx` that the event after the claimed position failed `attempts` times.
    async fn failed(&self, tx: &mut Tx, attempts: u32, error: &str) -> anyhow::Result<()>;
}

/// What runs a partition's events: the handler, where the partition's progress is kept, and
/// how failures are retried.
pub(crate) struct Runner<'a> {
    pub db: &'a db::Db,
    pub handler: &'a dyn Handler,
    pub checkpoint: &'a dyn Checkpoint,
    pub policy: &'a RetryPolicy,
    pub shutdown: &'a CancellationToken,
}

/// A failed event, awaiting its next attempt.
struct Failed<'d> {
    delivery: &'d Delivery,
    attempts: u32,
    last_error: Option<String>,
}

/// What one transaction made of a chunk: the position of the last event applied, the event
/// that failed (its failure recorded), and the events applied without a savepoint, to be
/// counted once the transaction has committed.
struct Applied<'d> {
    last_done: Option<i64>,
    failed: Option<Failed<'d>>,
    bare: Vec<(&'d Delivery, Outcome)>,
}

impl Runner<'_> {
    /// Runs a partition's `batch` (in order): one transaction for the run of events that
    /// succeed; a failing event is retried alone with backoff and dead-lettered once it has
    /// failed `policy.max_attempts` times. Transient failures do not count as attempts: the
    /// event waits, with backoff, for its dependency to return. Returns the position of the
    /// last event that is done, if any; the caller fetches the rest again from there. Stops
    /// early, leaving the failing event undone, when `shutdown` fires or another worker took
    /// the partition over.
    pub(crate) async fn run(&self, batch: &[Delivery]) -> anyhow::Result<Option<i64>> {
        // SQLite has one writer: nothing waits on a batch's locks but the next batch.
        let limit = match self.db.backend() {
            db::Backend::Sqlite => usize::MAX,
            db::Backend::Postgres => self.handler.batch_limit().max(1),
        };
        let mut done = None;
        for chunk in batch.chunks(limit) {
            let chunk_done = match self.run_chunk(chunk).await? {
                (last_done, None) => last_done,
                (last_done, Some(failed)) => self.retry(failed).await?.or(last_done),
            };
            if chunk_done.is_none() || chunk_done != chunk.last().map(|d| d.position) {
                return Ok(chunk_done.or(done));
            }
            done = chunk_done;
        }
        Ok(done)
    }

    fn max_attempts(&self) -> u32 {
        self.policy.max_attempts.max(1)
    }

    /// Applies `chunk` in one transaction, holding the partition's claim from the first event
    /// to the commit, up to its first failure, which is recorded in the same transaction (so
    /// no other worker attempts the event before its attempt is counted). Returns the position
    /// of the last event applied and the failed one, if any.
    async fn run_chunk<'d>(
        &self,
        chunk: &'d [Delivery],
    ) -> anyhow::Result<(Option<i64>, Option<Failed<'d>>)> {
        let mut tx = self.db.begin().await?;
        let Some(claim) = self.checkpoint.claim(&mut tx).await? else {
            tx.rollback().await?;
            return Ok((None, None));
        };
        let pending: Vec<&Delivery> = chunk.iter().filter(|d| d.position > claim.done).collect();
        if pending.is_empty() {
            tx.rollback().await?;
            return Ok((None, None));
        }
        // An event that has failed before, or a policy that replays each event (tests), goes
        // the careful way from the start.
        let applied = if claim.attempts > 0 || self.policy.redeliver {
            self.apply_each(&mut tx, &pending, claim.attempts).await?
        } else {
            self.apply_bare_first(&mut tx, &pending).await?
        };
        if let (Some(position), None) = (applied.last_done, &applied.failed) {
            self.checkpoint.advance(&mut tx, position).await?;
        }
        tx.commit().await?;
        for (delivery, outcome) in &applied.bare {
            let event = &delivery.envelope;
            event_span(self.handler, event).in_scope(|| handled(self.handler, event, outcome));
        }
        Ok((applied.last_done, applied.failed))
    }

    /// The common case first: the `pending` events under one savepoint, none per event (two
    /// round trips an event fewer). When an event fails, the work is rolled back to that
    /// savepoint (the claim stays held), the events before it are applied again each under
    /// its own, and the failure is recorded as the event's attempt.
    async fn apply_bare_first<'d>(
        &self,
        tx: &mut Tx,
        pending: &[&'d Delivery],
    ) -> anyhow::Result<Applied<'d>> {
        let hooks = tx.hooks_mark();
        tx.execute_raw("SAVEPOINT stampede_batch").await?;
        let mut bare = Vec::with_capacity(pending.len());
        for (at, &delivery) in pending.iter().enumerate() {
            let error = match apply_bare(tx, self.handler, &delivery.envelope).await {
                Ok(outcome) => {
                    bare.push((delivery, outcome));
                    continue;
                }
                Err(error) => error,
            };
            tx.execute_raw("ROLLBACK TO SAVEPOINT stampede_batch")
                .await?;
            tx.discard_hooks_since(hooks);
            let attempts = counted(self.handler, &error);
            let (event, error) = (&delivery.envelope, format!("{error:#}"));
            event_span(self.handler, event).in_scope(|| failed(self.handler, event, &error));
            let before = self.apply_each(tx, &pending[..at], 0).await?;
            if before.failed.is_some() {
                return Ok(before);
            }
            if let Some(position) = before.last_done {
                // The attempt count belongs to the failing event.
                self.checkpoint.advance(tx, position).await?;
            }
            self.checkpoint.failed(tx, attempts, &error).await?;
            return Ok(Applied {
                failed: Some(Failed {
                    delivery,
                    attempts,
                    last_error: Some(error),
                }),
                ..before
            });
        }
        Ok(Applied {
            last_done: bare.last().map(|(d, _)| d.position),
            failed: None,
            bare,
        })
    }

    /// Applies the `pending` events in `tx` up to the first failure, each under a savepoint;
    /// the first has failed `prior` times before. The failure is recorded in `tx`.
    async fn apply_each<'d>(
        &self,
        tx: &mut Tx,
        pending: &[&'d Delivery],
        prior: u32,
    ) -> anyhow::Result<Applied<'d>> {
        let mut last_done = None;
        for (i, &delivery) in pending.iter().enumerate() {
            let prior = if i == 0 { prior } else { 0 };
            if prior >= self.max_attempts() {
                return Ok(Applied {
                    last_done,
                    failed: Some(Failed {
                        delivery,
                        attempts: prior,
                        last_error: None,
                    }),
                    bare: Vec::new(),
                });
            }
            match apply(tx, self.handler, self.policy, &delivery.envelope).await {
                Ok(_) => last_done = Some(delivery.position),
                Err(error) => {
                    let attempts = prior + counted(self.handler, &error);
                    let error = format!("{error:#}");
                    if let Some(position) = last_done {
                        // The attempt count belongs to the failing event.
                        self.checkpoint.advance(tx, position).await?;
                    }
                    self.checkpoint.failed(tx, attempts, &error).await?;
                    return Ok(Applied {
                        last_done,
                        failed: Some(Failed {
                            delivery,
                            attempts,
                            last_error: Some(error),
                        }),
                        bare: Vec::new(),
                    });
                }
            }
        }
        Ok(Applied {
            last_done,
            failed: None,
            bare: Vec::new(),
        })
    }

    /// Retries a failed event alone, with backoff, until it is applied or dead-lettered;
    /// returns its position then, `None` when stopped first (shutdown, or the partition was
    /// taken over).
    async fn retry(&self, failed: Failed<'_>) -> anyhow::Result<Option<i64>> {
        let Failed {
            delivery,
            mut attempts,
            mut last_error,
        } = failed;
        // Every failure so far, transient ones included: what the backoff grows with.
        let mut failures = 1;
        loop {
            if attempts < self.max_attempts() {
                tokio::select! {
                    () = tokio::time::sleep(self.policy.backoff(failures)) => {}
                    () = self.shutdown.cancelled() => return Ok(None),
                }
            }
            let mut tx = self.db.begin().await?;
            let claim = match self.checkpoint.claim(&mut tx).await? {
                Some(claim) if claim.done < delivery.position => claim,
                _ => {
                    tx.rollback().await?;
                    return Ok(None);
                }
            };
            attempts = attempts.max(claim.attempts);
            if attempts >= self.max_attempts() {
                let error = claim
                    .last_error
                    .or(last_error)
                    .unwrap_or_else(|| "handler failed".into());
                let group = self.handler.group();
                dead_letter(&mut tx, group, &delivery.envelope, &error, attempts).await?;
                self.checkpoint.advance(&mut tx, delivery.position).await?;
                tx.commit().await?;
                return Ok(Some(delivery.position));
            }
            match apply(&mut tx, self.handler, self.policy, &delivery.envelope).await {
                Ok(_) => {
                    self.checkpoint.advance(&mut tx, delivery.position).await?;
                    tx.commit().await?;
                    return Ok(Some(delivery.position));
                }
                Err(error) => {
                    attempts += counted(self.handler, &error);
                    failures += 1;
                    let error = format!("{error:#}");
                    self.checkpoint.failed(&mut tx, attempts, &error).await?;
                    tx.commit().await?;
                    last_error = Some(error);
                }
            }
        }
    }
}

/// How many attempts a failure costs: none when a dependency is unreachable (the event is not
/// at fault and waits for it), one otherwise.
fn counted(handler: &dyn Handler, error: &anyhow::Error) -> u32 {
    if crate::transient::is_transient(error) {
        counter!("stampede_events_waiting_total", "consumer" => handler.group().to_owned())
            .increment(1);
        0
    } else {
        1
    }
}
