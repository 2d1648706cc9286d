//! The consumer contract and what both buses share to consume: applying an event exactly once
//! (dedupe record in the effect's transaction) and dead-lettering one that keeps failing; the
//! [`Runner`] (`runner.rs`) runs a partition's batches and retries with backoff.

use std::time::Duration;

use async_trait::async_trait;
use db::{exec, sqlx, Tx};
use events::{correlation, Envelope};
use metrics::{counter, histogram};
use sqlx::types::Json;
use tracing::Instrument as _;

mod runner;

pub(crate) use runner::{Checkpoint, Claim, Runner};

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
