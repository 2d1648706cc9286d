//! The event backbone: a state change and its events commit together (the [`Outbox`]), a relay
//! publishes them to the bus, and consumers apply them at least once with idempotent effects.
//!
//! Two buses behind one [`EventBus`], picked by URL:
//! - `db://` — the outbox table is the durable log (see [`dblog`](crate::dblog));
//! - `kafka://host:port,...` — Kafka or any Kafka-protocol broker (cargo feature `kafka`).
//!
//! Guarantees, on both: events with the same key are consumed in the order they were written;
//! every consumer group sees every event of its topics; an event's effect is applied once per
//! group (the dedupe record commits with the effect); a failing event is retried with backoff
//! and dead-lettered after [`RetryPolicy::max_attempts`]; shutdown finishes in-flight batches.

mod bus;
mod consumer;
pub mod dblog;
pub mod dead_letters;
#[cfg(feature = "kafka")]
mod doorbell;
mod group_commit;
#[cfg(feature = "kafka")]
mod kafka;
mod listen;
mod outbox;
mod relay;
mod settings;
mod transient;
mod transport;
mod watchdog;

pub use bus::EventBus;
pub use consumer::{Handler, RetryPolicy};
pub use outbox::{partition_for, Outbox};
pub use settings::{BusConfig, BusSettings, ConsumerConfig, KafkaConfig};
pub use transient::is_transient;
