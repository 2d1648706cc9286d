//! An order's saga as the deployment's own records tell it: every event of the order, when it
//! was written and published, which consumer groups applied it and when, and its dead letters.
//! Read-only; the records are the outbox, the dedupe records and the dead letters, so it works
//! on both buses and covers the outbox's retention period.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use db::{on_db, sqlx, Db};
use events::Envelope;
use sqlx::types::Json;
use uuid::Uuid;

use crate::{find, Order, OrderError};

/// One event of the saga.
#[derive(Debug)]
pub struct Step {
    pub event: Envelope,
    /// When the transaction that made it committed it to the outbox.
    pub written_at: DateTime<Utc>,
    /// When the relay had it on the bus.
    pub published_at: Option<DateTime<Utc>>,
    /// The consumer groups that applied it, and when each started to, oldest first.
    pub applied: Vec<(String, DateTime<Utc>)>,
    pub dead_letters: Vec<DeadLetter>,
}

/// A consumer group that gave up on an event.
#[derive(Debug)]
pub struct DeadLetter {
    pub consumer: String,
    pub error: String,
    pub attempts: i32,
    pub at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// An order and its saga's events, oldest first.
#[derive(Debug)]
pub struct Trace {
    pub order: Order,
    pub steps: Vec<Step>,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    envelope: Json<Envelope>,
    created_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct AppliedRow {
    consumer: String,
    processed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct DeadLetterRow {
    consumer: String,
    error: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    replayed_at: Option<DateTime<Utc>>,
}

/// The trace of order `id`.
pub async fn trace(db: &Db, id: i64) -> Result<Trace, OrderError> {
    let order = find::find(db, id).await?;
    // The saga's events are keyed by the order.
    let rows: Vec<OutboxRow> = on_db!(db, c => sqlx::query_as(
        "SELECT envelope, created_at, published_at FROM outbox WHERE event_key = $1 ORDER BY seq",
    )
    .bind(id.to_string())
    .fetch_all(c)
    .await)?;
    let mut steps = Vec::with_capacity(rows.len());
    for row in rows {
        let event = row.envelope.0;
        if event.payload["orderId"] != id {
            continue; // another entity's event that happens to share the key
        }
        steps.push(Step {
            applied: applied(db, event.id).await?,
            dead_letters: dead_letters(db, event.id).await?,
            event,
            written_at: row.created_at,
            published_at: row.published_at,
        });
    }
    Ok(Trace { order, steps })
}

async fn applied(db: &Db, event: Uuid) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
    let rows: Vec<AppliedRow> = on_db!(db, c => sqlx::query_as(
        "SELECT consumer, processed_at FROM processed_events WHERE event_id = $1 \
         ORDER BY processed_at",
    )
    .bind(event)
    .fetch_all(c)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.consumer, r.processed_at))
        .collect())
}

async fn dead_letters(db: &Db, event: Uuid) -> sqlx::Result<Vec<DeadLetter>> {
    let rows: Vec<DeadLetterRow> = on_db!(db, c => sqlx::query_as(
        "SELECT consumer, error, attempts, created_at, replayed_at FROM dead_letters \
         WHERE event_id = $1 ORDER BY id",
    )
    .bind(event)
    .fetch_all(c)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter {
            consumer: r.consumer,
            error: r.error,
            attempts: r.attempts,
            at: r.created_at,
            replayed_at: r.replayed_at,
        })
        .collect())
}

fn after(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!("+{} ms", (to - from).num_milliseconds())
}

/// The timeline for people: one block per event, times relative to the first event.
impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = &self.order;
        write!(f, "order {}: {}", order.id, order.status.as_str())?;
        if let Some(reason) = &order.failure_reason {
            write!(f, " ({reason})")?;
        }
        writeln!(f)?;
        let Some(first) = self.steps.first() else {
            return writeln!(f, "no events in the outbox (older than its retention?)");
        };
        let start = first.written_at;
        writeln!(f, "started {start}")?;
        for step in &self.steps {
            let event = &step.event;
            let mut line = format!(
                "{:>9}  {:<22} event {}",
                after(start, step.written_at),
                event.topic(),
                event.id
            );
            if let Some(cause) = event.causation_id.and_then(|id| {
                self.steps
                    .iter()
                    .find(|s| s.event.id == id)
                    .map(|s| s.event.topic())
            }) {
                let _ = write!(line, " (after {cause})");
            }
            writeln!(f, "{line}")?;
            writeln!(f, "{:>11}correlation {}", "", event.correlation_id)?;
            match step.published_at {
                Some(at) => writeln!(f, "{:>11}published {}", "", after(step.written_at, at))?,
                None => writeln!(f, "{:>11}not published yet", "")?,
            }
            for (consumer, at) in &step.applied {
                writeln!(
                    f,
                    "{:>11}applied by {consumer} {}",
                    "",
                    after(step.written_at, *at)
                )?;
            }
            for dead in &step.dead_letters {
                let replayed = match dead.replayed_at {
                    Some(at) => format!(", replayed {}", after(step.written_at, at)),
                    None => String::new(),
                };
                writeln!(
                    f,
                    "{:>11}DEAD LETTER of {} {} after {} attempts{replayed}: {}",
                    "",
                    dead.consumer,
                    after(step.written_at, dead.at),
                    dead.attempts,
                    dead.error
                )?;
            }
        }
        Ok(())
    }
}
