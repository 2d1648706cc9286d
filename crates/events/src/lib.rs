//! Stampede's event vocabulary: the [`Envelope`] every event travels in, the topic names that
//! operators see in Kafka, and the [`Event`] trait that typed payloads implement.
//!
//! Contexts meet through these types. The three direct calls between contexts (a payment taking
//! points; the ranking reading product names and paid lines) are named in ARCHITECTURE.md.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

pub mod correlation;
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
    /// The work this event belongs to: the id of the HTTP request that caused it (or of the
    /// job that did, or the event it follows from), shared by every event that follows.
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
    /// Wraps `event` with the correlation id in [`correlation::scope`], or a fresh one.
    pub fn new<E: Event>(event: &E) -> Self {
        let correlation_id = correlation::current().unwrap_or_else(|| Uuid::new_v4().to_string());
        Self::with_correlation(event, correlation_id)
    }

    fn with_correlation<E: Event>(event: &E, correlation_id: String) -> Self {
        Self::raw(
            E::TYPE,
            event.key(),
            correlation_id,
            None,
            E::VERSION,
            serde_json::to_value(event).expect("event payloads serialize to JSON"),
        )
    }

    /// Wraps `event` as a consequence of `cause`: same correlation id, `causationId = cause.id`.
    pub fn caused_by<E: Event>(event: &E, cause: &Envelope) -> Self {
        let mut envelope = Self::with_correlation(event, cause.correlation_id.clone());
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

    #[tokio::test]
    async fn an_envelope_round_trips_through_json_in_camel_case() {
        let cause =
            correlation::scope("flow-1".into(), async { Envelope::new(&Ping { n: 1 }) }).await;
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

    #[tokio::test]
    async fn events_made_in_one_scope_share_its_correlation_id_and_others_get_their_own() {
        let (a, b) = correlation::scope("req-7".into(), async {
            (Envelope::new(&Ping { n: 1 }), Envelope::new(&Ping { n: 2 }))
        })
        .await;
        assert_eq!(
            (a.correlation_id.as_str(), b.correlation_id.as_str()),
            ("req-7", "req-7")
        );
        let (c, d) = (Envelope::new(&Ping { n: 3 }), Envelope::new(&Ping { n: 4 }));
        assert_ne!(c.correlation_id, d.correlation_id);
        assert!(correlation::current().is_none());
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
        let envelope = Envelope::new(&Ping { n: 1 });
        assert!(envelope.decode::<Other>().is_err());
    }
}
