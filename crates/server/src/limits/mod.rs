//! What keeps one crowd, or one script, from taking the server down, as counts and caps that
//! the HTTP layer consults: requests in flight, SSE streams per process (503) and per user
//! (429), per-user, per-email and per-address rates (429 `RATE_LIMITED`, counted in the cache
//! so that they hold across instances), and work done at most once a period ([`Throttle`]).
//! Every refusal is a [`Refused`], which the HTTP layer answers as a problem with
//! `Retry-After`.

mod capacity;
mod config;
pub mod proxies;
mod throttle;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use metrics::counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use capacity::{Capacity, Descriptors, CONNECTION_COST_BYTES};
pub use config::{HttpConfig, RateConfig, SseConfig};
pub use proxies::TrustedProxies;
pub use throttle::Throttle;

/// Why a limit refused a request; either way the client may retry later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Over a rate, or over the streams one user may hold (429 `RATE_LIMITED`).
    RateLimited {
        detail: String,
        retry_after_secs: u64,
    },
    /// The process is at its cap (503 `OVERLOADED`).
    Overloaded(&'static str),
}

/// How long a rate check waits for the cache before letting the request through: a slow cache
/// must not slow every order, issue request and login.
const RATE_CHECK_WAIT: Duration = Duration::from_millis(250);

/// Open order streams per user.
type UserStreams = Arc<Mutex<HashMap<i64, usize>>>;

/// The limits of one process; shared by every request.
pub struct Limits {
    in_flight: Arc<Semaphore>,
    /// How long a request may take until its response starts.
    pub request_timeout: Duration,
    pub body_limit: usize,
    streams: Arc<Semaphore>,
    max_streams: usize,
    streams_per_user: usize,
    user_streams: UserStreams,
    window: Duration,
    rates: [u64; 5],
    /// Peers whose `X-Forwarded-For` names the client (`http::client_address`).
    pub trusted_proxies: TrustedProxies,
}

/// The per-window rates.
#[derive(Debug, Clone, Copy)]
pub enum Rate {
    /// Orders placed, per user.
    Orders,
    /// Coupon issue requests, per user.
    CouponIssues,
    /// Failed login attempts, per email and client address.
    Logins,
    /// Failed login attempts, per email from any address (looser: one caller cannot lock the
    /// owner out, many still meet a bound).
    LoginsPerEmail,
    /// Sign-ups, per client address.
    SignUps,
}

impl Rate {
    fn name(self) -> &'static str {
        match self {
            Rate::Orders => "orders",
            Rate::CouponIssues => "coupon-issues",
            Rate::Logins => "logins",
            Rate::LoginsPerEmail => "logins-per-email",
            Rate::SignUps => "sign-ups",
        }
    }
}

impl Limits {
    pub fn new(http: &HttpConfig, sse: &SseConfig, rate: &RateConfig) -> anyhow::Result<Self> {
        Ok(Self {
            in_flight: Arc::new(Semaphore::new(http.max_in_flight)),
            request_timeout: Duration::from_millis(http.request_timeout_ms),
            body_limit: http.body_limit_bytes,
            streams: Arc::new(Semaphore::new(sse.max_streams)),
            max_streams: sse.max_streams,
            streams_per_user: sse.max_streams_per_user,
            user_streams: Arc::default(),
            window: Duration::from_secs(rate.window_secs),
            rates: [
                rate.orders,
                rate.coupon_issues,
                rate.logins,
                rate.logins_per_email,
                rate.signups,
            ],
            trusted_proxies: TrustedProxies::parse(&http.trusted_proxies)?,
        })
    }

    /// Counts one `rate` event of `who` (a user id, an email) and refuses it with 429
    /// `RATE_LIMITED` past the limit of the current window. The count lives in the cache, so
    /// it holds across instances; when the cache cannot count within [`RATE_CHECK_WAIT`], the
    /// request goes through.
    pub async fn check_rate(
        &self,
        cache: &cache::Cache,
        rate: Rate,
        who: &str,
    ) -> Result<(), Refused> {
        let limit = self.rates[rate as usize];
        let key = rate_key(rate, who);
        let counted = tokio::time::timeout(RATE_CHECK_WAIT, cache.hit(&key, self.window))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {RATE_CHECK_WAIT:?}")));
        match counted {
            Ok((count, _)) if count <= limit => Ok(()),
            Ok((_, left)) => {
                counter!("stampede_rate_limited_total", "rate" => rate.name()).increment(1);
                Err(Refused::RateLimited {
                    detail: format!(
                        "at most {limit} {} per {} s; retry later",
                        rate.name().replace('-', " "),
                        self.window.as_secs()
                    ),
                    retry_after_secs: left.as_secs_f64().ceil() as u64,
                })
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    rate = rate.name(),
                    "cannot count a rate; letting the request through"
                );
                Ok(())
            }
        }
    }

    /// Takes back the event of `who` that [`Self::check_rate`] counted (a login that
    /// succeeded). Best effort: a cache that cannot answer leaves the count as it is.
    pub async fn forgive(&self, cache: &cache::Cache, rate: Rate, who: &str) {
        let key = rate_key(rate, who);
        if let Ok(Err(error)) = tokio::time::timeout(RATE_CHECK_WAIT, cache.forgive(&key)).await {
            tracing::debug!(
                error = format!("{error:#}"),
                "cannot forgive a counted attempt"
            );
        }
    }

    /// A place for one more SSE stream, of `user` if the stream is a user's: 503 `OVERLOADED`
    /// when the process has its maximum open, 429 `RATE_LIMITED` when the user has.
    pub fn open_stream(&self, user: Option<i64>) -> Result<StreamSlot, Refused> {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            counter!("stampede_sse_refused_total", "why" => "process").increment(1);
            return Err(Refused::Overloaded("too many open streams; retry"));
        };
        let user = match user {
            None => None,
            Some(id) => {
                let mut users = self.user_streams.lock().expect("stream counts");
                let open = users.entry(id).or_default();
                if *open >= self.streams_per_user {
                    counter!("stampede_sse_refused_total", "why" => "user").increment(1);
                    return Err(Refused::RateLimited {
                        detail: format!(
                            "at most {} open streams per user; close one first",
                            self.streams_per_user
                        ),
                        retry_after_secs: 5,
                    });
                }
                *open += 1;
                Some((id, self.user_streams.clone()))
            }
        };
        Ok(StreamSlot {
            _permit: permit,
            user,
        })
    }

    /// SSE streams open in this process.
    pub fn open_streams(&self) -> usize {
        self.max_streams - self.streams.available_permits()
    }

    /// A place for one more request in flight, if the cap has one.
    pub fn request_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }
}

fn rate_key(rate: Rate, who: &str) -> String {
    format!("rate:{}:{who}", rate.name())
}

/// One open SSE stream; the place is given back when this is dropped.
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    user: Option<(i64, UserStreams)>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some((id, users)) = &self.user {
            let mut users = users.lock().expect("stream counts");
            if let Some(open) = users.get_mut(id) {
                *open -= 1;
                if *open == 0 {
                    users.remove(id);
                }
            }
        }
    }
}
