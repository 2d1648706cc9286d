//! What keeps one crowd, or one script, from taking the server down. Every refusal is a
//! problem: requests beyond the in-flight cap get 503 `OVERLOADED`, a request that takes too
//! long gets 503 `UNAVAILABLE`, a body declared over the limit gets 413 before it is read, SSE
//! streams are capped per process (503) and per user (429), and per-user, per-email and
//! per-address rates get 429 `RATE_LIMITED`. All answers that invite a retry carry
//! `Retry-After`.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::{Stream, StreamExt as _};
use metrics::counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{client_address::TrustedProxies, error::ApiError};
use crate::{config::Settings, state::AppState};

/// Comment lines keep idle streams (and the proxies in front of them) alive.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a rate check waits for the cache before letting the request through: a slow cache
/// must not slow every order, issue request and login.
const RATE_CHECK_WAIT: Duration = Duration::from_millis(250);

/// Open order streams per user.
type UserStreams = Arc<Mutex<HashMap<i64, usize>>>;

/// The limits of one process; shared by every request.
pub struct Limits {
    in_flight: Arc<Semaphore>,
    request_timeout: Duration,
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
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            in_flight: Arc::new(Semaphore::new(settings.http_max_in_flight)),
            request_timeout: Duration::from_millis(settings.http_request_timeout_ms),
            body_limit: settings.http_body_limit_bytes,
            streams: Arc::new(Semaphore::new(settings.sse_max_streams)),
            max_streams: settings.sse_max_streams,
            streams_per_user: settings.sse_max_streams_per_user,
            user_streams: Arc::default(),
            window: Duration::from_secs(settings.rate_window_secs),
            rates: [
                settings.rate_orders,
                settings.rate_coupon_issues,
                settings.rate_logins,
                settings.rate_logins_per_email,
                settings.rate_signups,
            ],
            trusted_proxies: TrustedProxies::parse(&settings.http_trusted_proxies)?,
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
    ) -> Result<(), ApiError> {
        let limit = self.rates[rate as usize];
        let key = rate_key(rate, who);
        let counted = tokio::time::timeout(RATE_CHECK_WAIT, cache.hit(&key, self.window))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {RATE_CHECK_WAIT:?}")));
        match counted {
            Ok((count, _)) if count <= limit => Ok(()),
            Ok((_, left)) => {
                counter!("stampede_rate_limited_total", "rate" => rate.name()).increment(1);
                Err(ApiError::rate_limited(
                    format!(
                        "at most {limit} {} per {} s; retry later",
                        rate.name().replace('-', " "),
                        self.window.as_secs()
                    ),
                    left.as_secs_f64().ceil() as u64,
                ))
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
    pub fn open_stream(&self, user: Option<i64>) -> Result<StreamSlot, ApiError> {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            counter!("stampede_sse_refused_total", "why" => "process").increment(1);
            return Err(ApiError::overloaded("too many open streams; retry"));
        };
        let user = match user {
            None => None,
            Some(id) => {
                let mut users = self.user_streams.lock().expect("stream counts");
                let open = users.entry(id).or_default();
                if *open >= self.streams_per_user {
                    counter!("stampede_sse_refused_total", "why" => "user").increment(1);
                    return Err(ApiError::rate_limited(
                        format!(
                            "at most {} open streams per user; close one first",
                            self.streams_per_user
                        ),
                        5,
                    ));
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

/// `events` as an SSE response with heartbeats, holding `slot` while it is open, and ending
/// when the server shuts down (clients reconnect elsewhere and resume with `Last-Event-ID`).
pub fn sse(
    state: &AppState,
    slot: StreamSlot,
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = events
        .take_until(state.shutdown.clone().cancelled_owned())
        .map(move |event| {
            let _open = &slot;
            event
        });
    Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT))
}

/// How often a waiting stream reads its resource again without a wake-up: pub/sub is best
/// effort, what is stored is the truth.
const RECHECK: Duration = Duration::from_secs(5);

/// Waits until `wake_ups` says the followed resource changed, or [`RECHECK`] passed; then a
/// stream reads it again.
pub async fn changed(wake_ups: &mut cache::Subscription) {
    tokio::select! {
        _ = wake_ups.recv() => {}
        () = tokio::time::sleep(RECHECK) => {}
    }
}

/// Routes exempt from shedding and the request timeout: an orchestrator must still be able to
/// ask whether the process lives, and a scraper to see why it is overloaded.
fn is_operations(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

/// The in-flight cap, the request timeout and the declared body size, for every request.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_operations(request.uri().path()) {
        return next.run(request).await;
    }
    let limits = &state.limits;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.body_limit as u64) {
        return ApiError::too_large().into_response();
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        counter!("stampede_http_shed_total").increment(1);
        return ApiError::overloaded("too many requests in flight; retry").into_response();
    };
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            counter!("stampede_http_timeouts_total").increment(1);
            tracing::warn!("request timed out");
            ApiError::unavailable("the request took too long; retry").into_response()
        }
    }
}
