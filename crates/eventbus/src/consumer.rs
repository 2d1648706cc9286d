//! The consumer contract and the part of the consumer runner that both buses share: applying an
//! event exactly once (dedupe record in the effect's transaction), retrying with backoff, and
//! dead-lettering an event that keeps failing.

use std::time::Duration;

use async_trait::async_trait;
use db::{exec, sqlx, Tx};
use events::{correlation, Envelope};
use metrics::{counter, histogram};
use sqlx::types::Json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// A consumer of events. Each handler is one consumer group: every group sees every event of
/// its topics; the workers of one group share them.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The consumer-group name. Offsets and dedupe records are kept under it: never rename it.
    fn group(&self) -> &str;
    /// The topics this consumer reads.
    fn topics(&self) -> Vec<String>;
    /// Applies `event` inside `tx`. The runner records `(group, event id)` in the same
    /// transaction, so a committed effect is never applied again. An error rolls the effect
    /// back; the event is retried with backoff and dead-lettered after the last attempt —
    /// unless the error is transient ([`crate::transient::is_transient`]: a dependency unreachable or
    /// too slow), which is retried until the dependency returns and never dead-letters.
    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()>;
    /// At most this many events share one transaction on PostgreSQL. Batching saves commits,
    /// but holds every row lock a batch takes until its commit: a handler that locks hot rows
    /// shared across partitions (stock) keeps its transactions to one event, so that concurrent
    /// partitions neither queue behind whole batches nor deadlock by taking the rows in another
    /// order. (SQLite has one writer, so batches stay whole there.)
    fn batch_limit(&self) -> usize {
        usize::MAX
    }
}

/// Retry policy of a consumer.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before an event is dead-lettered (at least 1).
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Chaos for tests: every event is handed to its handler twice, and the first run's
    /// database work is rolled back, as if the process had died before committing. Effects a
    /// handler makes outside the transaction (Redis) must be idempotent to survive it.
    pub redeliver: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            redeliver: false,
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed_attempts.saturating_sub(1));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// An event as delivered from one partition of a bus, with its position in that partition.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub envelope: Envelope,
    pub position: i64,
}

/// What became of one delivery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
}

/// Applies one event inside `tx`, under a savepoint so a failure leaves the rest of the batch
/// intact. Returns `Duplicate` (and does nothing) when this group already applied the event.
///
/// The handler runs in a span naming the group, the event and its correlation and causation
/// ids (so every line it logs carries them), and in the event's correlation scope (so the
/// events it creates carry its correlation id).
pub(crate) async fn apply(
    tx: &mut Tx,
    handler: &dyn Handler,
    policy: &RetryPolicy,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let applied = apply_in_scope(tx, handler, policy, event);
    in_event_scope(handler, event, applied).await
}

/// [`apply`] without the savepoint (two round trips fewer): a failure spoils `tx` since the
/// caller's savepoint, which it rolls back to. Counts nothing; the caller counts once `tx` has
/// committed.
async fn apply_bare(
    tx: &mut Tx,
    handler: &dyn Handler,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let applied = async {
        if !mark_processed(tx, handler, event).await? {
            return Ok(Outcome::Duplicate);
        }
        handler.handle(tx, event).await.map(|()| Outcome::Applied)
    };
    in_event_scope(handler, event, applied).await
}

/// Runs `work` in the event's span and correlation scope.
async fn in_event_scope<T>(
    handler: &dyn Handler,
    event: &Envelope,
    work: impl std::future::Future<Output = T>,
) -> T {
    correlation::scope(event.correlation_id.clone(), work)
        .instrument(event_span(handler, event))
        .await
}

/// The span of `handler`'s work on `event`: every line logged in it names the group, the
/// event and its correlation and causation ids.
fn event_span(handler: &dyn Handler, event: &Envelope) -> tracing::Span {
    tracing::info_span!(
        "event",
        consumer = handler.group(),
        topic = event.topic(),
        event_id = %event.id,
        correlation_id = %event.correlation_id,
        causation_id = event.causation_id.map(tracing::field::display),
    )
}

/// Records in `tx` that `handler`'s group applies `event`; false if it already had.
async fn mark_processed(
    tx: &mut Tx,
    handler: &dyn Handler,
    event: &Envelope,
) -> anyhow::Result<bool> {
    let inserted = exec!(
        tx,
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
        handler.group(),
        event.id,
        chrono::Utc::now()
    )?;
    Ok(inserted > 0)
}

async fn apply_in_scope(
    tx: &mut Tx,
    handler: &dyn Handler,
    policy: &RetryPolicy,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let hooks = tx.hooks_mark();
    if policy.redeliver {
        tx.execute_raw("SAVEPOINT stampede_crash").await?;
        let _ = handler.handle(tx, event).await;
        tx.execute_raw("ROLLBACK TO SAVEPOINT stampede_crash")
            .await?;
        tx.execute_raw("RELEASE SAVEPOINT stampede_crash").await?;
        tx.discard_hooks_since(hooks);
    }
    tx.execute_raw("SAVEPOINT stampede_event").await?;
    let outcome = match mark_processed(tx, handler, event).await {
        Ok(false) => Ok(Outcome::Duplicate),
        Ok(true) => handler.handle(tx, event).await.map(|()| Outcome::Applied),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(outcome) => {
            tx.execute_raw("RELEASE SAVEPOINT stampede_event").await?;
            handled(handler, event, &outcome);
            Ok(outcome)
        }
        Err(error) => {
            tx.execute_raw("ROLLBACK TO SAVEPOINT stampede_event")
                .await?;
            tx.execute_raw("RELEASE SAVEPOINT stampede_event").await?;
            tx.discard_hooks_since(hooks);
            failed(handler, event, &format!("{error:#}"));
            Err(error)
        }
    }
}

/// Counts an event applied or skipped, and how long after it was written it was applied.
fn handled(handler: &dyn Handler, event: &Envelope, outcome: &Outcome) {
    record(handler.group(), event.topic(), outcome);
    if *outcome == Outcome::Applied {
        let delay = (chrono::Utc::now() - event.occurred_at).num_microseconds();
        histogram!("stampede_event_delay_seconds", "consumer" => handler.group().to_owned(), "topic" => event.topic().to_owned())
            .record(delay.unwrap_or(0).max(0) as f64 / 1e6);
    }
    tracing::debug!(?outcome, "event handled");
}

/// Counts and logs a failed attempt at `event`.
fn failed(handler: &dyn Handler, event: &Envelope, error: &str) {
    counter!("stampede_events_failed_total", "consumer" => handler.group().to_owned(), "topic" => event.topic().to_owned()).increment(1);
    tracing::warn!(error, "event handler failed");
}

fn record(group: &str, topic: &str, outcome: &Outcome) {
    let name = match outcome {
        Outcome::Applied => "stampede_events_consumed_total",
        Outcome::Duplicate => "stampede_events_duplicate_total",
        Outcome::DeadLettered => "stampede_events_dead_lettered_total",
    };
    counter!(name, "consumer" => group.to_owned(), "topic" => topic.to_owned()).increment(1);
}

/// Stores `event` as a dead letter of `group` inside `tx`.
pub(crate) async fn dead_letter(
    tx: &mut Tx,
    group: &str,
    event: &Envelope,
    error: &str,
    attempts: u32,
) -> anyhow::Result<()> {
    exec!(
        tx,
        "INSERT INTO dead_letters (consumer, event_id, topic, envelope, error, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        group,
        event.id,
        event.topic(),
        Json(event),
        error,
        attempts as i32
    )?;
    tracing::error!(consumer = group, event_id = %event.id, attempts, error, "event dead-lettered");
    record(group, event.topic(), &Outcome::DeadLettered);
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            redeliver: false,
        };
        let waits: Vec<_> = (1..=5).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, vec![10, 20, 40, 50, 50]);
    }
}
