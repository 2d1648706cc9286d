//! Stampede's event vocabulary: the [`Envelope`] every event travels in, the topic names that
//! operators see in Kafka, and the [`Event`] trait that typed payloads implement.
//!
//! Contexts meet only through these types; none of them depends on another context's crate.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

pub mod order;
pub mod topics;

/// A typed event payload. `TYPE` is also the topic the event is published to.
pub trait Event: Serialize + DeserializeOwned {
    /// Event type and topic name, e.g. `order-created`.
    const TYPE: &'static str;
    /// Schema version of the payload; bump it when the payload changes incompatibly.
    const VERSION: u32 = 1;
    /// Partition key: events with the same key are delivered in the order they were written.
    fn key(&self) -> String;
}

/// The envelope every event is stored, published and consumed in.
///
/// `id` is a UUID v7 (time-ordered); consumers deduplicate on `(consumer, id)`, so a redelivered
/// envelope has one effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub key: String,
    pub occurred_at: DateTime<Utc>,
    /// The business flow this event belongs to (an order id or a coupon task id).
    pub correlation_id: String,
    /// The event that caused this one, if any.
    pub causation_id: Option<Uuid>,
    pub version: u32,
    pub payload: serde_json::Value,
}

/// A payload that does not match the type the consumer expected.
#[derive(Debug)]
pub struct DecodeError {
    pub expected: &'static str,
    pub found: String,
    pub source: Option<serde_json::Error>,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(e) => write!(f, "cannot decode {} payload: {e}", self.expected),
            None => write!(
                f,
                "expected a {} event, found {}",
                self.expected, self.found
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Envelope {
    /// Wraps `event` as the first event of a flow identified by `correlation_id`.
    pub fn new<E: Event>(event: &E, correlation_id: impl Into<String>) -> Self {
        Self::raw(
            E::TYPE,
            event.key(),
            correlation_id.into(),
            None,
            E::VERSION,
            serde_json::to_value(event).expect("event payloads serialize to JSON"),
        )
    }

    /// Wraps `event` as a consequence of `cause`: same correlation id, `causationId = cause.id`.
    pub fn caused_by<E: Event>(event: &E, cause: &Envelope) -> Self {
        let mut envelope = Self::new(event, cause.correlation_id.clone());
        envelope.causation_id = Some(cause.id);
        envelope
    }

    /// Builds an envelope from parts; for tools and tests that handle untyped events.
    pub fn raw(
        event_type: impl Into<String>,
        key: impl Into<String>,
        correlation_id: String,
        causation_id: Option<Uuid>,
        version: u32,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            key: key.into(),
            occurred_at: Utc::now(),
            correlation_id,
            causation_id,
            version,
            payload,
        }
    }

    /// The topic this envelope is published to.
    pub fn topic(&self) -> &str {
        &self.event_type
    }

    /// Decodes the payload as `E`; fails if the type differs or the payload does not match.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TYPE {
            return Err(DecodeError {
                expected: E::TYPE,
                found: self.event_type.clone(),
                source: None,
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|e| DecodeError {
            expected: E::TYPE,
            found: self.event_type.clone(),
            source: Some(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }

    impl Event for Ping {
        const TYPE: &'static str = "ping";
        fn key(&self) -> String {
            self.n.to_string()
        }
    }

    #[test]
    fn an_envelope_round_trips_through_json_in_camel_case() {
        let cause = Envelope::new(&Ping { n: 1 }, "flow-1");
        let effect = Envelope::caused_by(&Ping { n: 2 }, &cause);
        let json = serde_json::to_value(&effect).unwrap();
        assert_eq!(json["type"], "ping");
        assert_eq!(json["correlationId"], "flow-1");
        assert_eq!(json["causationId"], cause.id.to_string());
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, effect);
        assert_eq!(back.decode::<Ping>().unwrap(), Ping { n: 2 });
        assert!(cause.id < effect.id, "v7 ids are time-ordered");
    }

    #[test]
    fn decoding_as_another_type_fails() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Other;
        impl Event for Other {
            const TYPE: &'static str = "other";
            fn key(&self) -> String {
                String::new()
            }
        }
        let envelope = Envelope::new(&Ping { n: 1 }, "x");
        assert!(envelope.decode::<Other>().is_err());
    }
}
