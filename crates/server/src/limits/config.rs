//! The `[http]`, `[sse]` and `[rate]` sections of the configuration: what one process serves
//! at once, and how often one client may ask.

use serde::{Deserialize, Serialize};

use super::TrustedProxies;

/// `[http]`: connections, requests and their deadlines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a client may take to send a request's headers, in milliseconds; also how long
    /// an idle keep-alive connection stays open.
    pub header_timeout_ms: u64,
    /// How long a request may take until its response starts, in milliseconds (then 503
    /// `UNAVAILABLE`). Streams are bounded by their own rules once they have started.
    pub request_timeout_ms: u64,
    /// Connections served at once; further clients wait in the listen backlog. 0: as many as
    /// the file descriptors (raised to the hard limit at start) and `connection_memory_mb`
    /// allow; a larger number than the descriptors allow is cut down to it.
    pub max_connections: usize,
    /// The memory open connections (and the streams they hold) may take, in MiB: with
    /// `max_connections` 0, it allows one connection per 32 KiB of it.
    pub connection_memory_mb: u64,
    /// Requests handled at once; further ones get 503 `OVERLOADED` (health and metrics exempt).
    pub max_in_flight: usize,
    /// The largest request body, in bytes (413 beyond).
    pub body_limit_bytes: usize,
    /// Proxies (comma-separated addresses or networks, `10.0.0.0/8`) whose `X-Forwarded-For`
    /// names the client of the per-address limits; empty: the peer is the client.
    pub trusted_proxies: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            request_timeout_ms: 15_000,
            max_connections: 0,
            connection_memory_mb: 1_024,
            max_in_flight: 1_024,
            body_limit_bytes: 65_536,
            trusted_proxies: String::new(),
        }
    }
}

impl HttpConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            (
                "header_timeout_ms",
                self.header_timeout_ms.into(),
                100,
                600_000,
            ),
            (
                "request_timeout_ms",
                self.request_timeout_ms.into(),
                100,
                600_000,
            ),
            (
                "max_connections",
                self.max_connections as i128,
                0,
                1_000_000,
            ),
            (
                "connection_memory_mb",
                self.connection_memory_mb.into(),
                1,
                1 << 20,
            ),
            ("max_in_flight", self.max_in_flight as i128, 1, 1_000_000),
            (
                "body_limit_bytes",
                self.body_limit_bytes as i128,
                1_024,
                16 << 20,
            ),
        ]
    }

    /// Refuses a proxy list that does not parse.
    pub fn validate(&self) -> anyhow::Result<()> {
        TrustedProxies::parse(&self.trusted_proxies).map(drop)
    }
}

/// `[sse]`: open event streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// Open SSE streams in this process (503 `OVERLOADED` beyond). 0: fifteen in sixteen of
    /// the connections served at once; no more than those.
    pub max_streams: usize,
    /// Open order streams of one user in this process (429 `RATE_LIMITED` beyond).
    pub max_streams_per_user: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            max_streams: 0,
            max_streams_per_user: 8,
        }
    }
}

impl SseConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            ("max_streams", self.max_streams as i128, 0, 1_000_000),
            (
                "max_streams_per_user",
                self.max_streams_per_user as i128,
                1,
                1_000,
            ),
        ]
    }
}

/// `[rate]`: how many of each kind one user, email or address may ask per window (429
/// `RATE_LIMITED` beyond), counted in the cache so that they hold across instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// The window of the rates below, in seconds.
    pub window_secs: u64,
    /// Orders one user may place per window.
    pub orders: u64,
    /// Coupon issue requests one user may make per window.
    pub coupon_issues: u64,
    /// Failed login attempts per email and client address per window.
    pub logins: u64,
    /// Failed login attempts per email per window, from any address.
    pub logins_per_email: u64,
    /// Sign-ups per client address per window.
    pub signups: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            window_secs: 10,
            orders: 30,
            coupon_issues: 30,
            logins: 10,
            logins_per_email: 100,
            signups: 20,
        }
    }
}

impl RateConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            ("window_secs", self.window_secs.into(), 1, 3_600),
            ("orders", self.orders.into(), 1, 1_000_000),
            ("coupon_issues", self.coupon_issues.into(), 1, 1_000_000),
            ("logins", self.logins.into(), 1, 1_000_000),
            (
                "logins_per_email",
                self.logins_per_email.into(),
                1,
                1_000_000,
            ),
            ("signups", self.signups.into(), 1, 1_000_000),
        ]
    }
}
