//! The in-flight cap, the request timeout and the declared body size, applied to every request
//! (the counts are in [`Limits`](crate::limits::Limits)): beyond the cap 503 `OVERLOADED`, past
//! the timeout 503 `UNAVAILABLE`, a body declared over the limit 413 before it is read.

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics::counter;

use super::error::ApiError;
use crate::state::AppState;

/// Routes exempt from shedding and the request timeout: an orchestrator must still be able to
/// ask whether the process lives, and a scraper to see why it is overloaded.
fn is_operations(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

/// A waiting room's place streams, which a sale's crowd opens all at once: they are bounded by
/// the stream cap instead of the in-flight cap (a rush of them is to be held, not shed), and
/// answer their first event after one read of the line.
fn is_place_stream(request: &Request) -> bool {
    let path = request.uri().path();
    request.method() == axum::http::Method::GET
        && path.starts_with("/api/room-places/")
        && path.ends_with("/events")
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
    let _permit = if is_place_stream(&request) {
        None
    } else {
        let Some(permit) = limits.request_permit() else {
            counter!("stampede_http_shed_total").increment(1);
            return ApiError::overloaded("too many requests in flight; retry").into_response();
        };
        Some(permit)
    };
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            counter!("stampede_http_timeouts_total").increment(1);
            ApiError::unavailable("the request took too long; retry").into_response()
        }
    }
}
