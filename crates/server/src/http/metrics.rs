//! Prometheus metrics: per-route HTTP counters and latency histograms, and the bus gauges
//! (outbox backlog, consumer lag) refreshed at each scrape. Event counters are recorded by
//! `eventbus` where events are published, consumed, failed and dead-lettered.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// The process-wide recorder (installed once, shared by every app in a test process).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .expect("valid buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone()
}

/// Records count and latency of each request under its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    counter!("stampede_http_requests_total", &labels).increment(1);
    histogram!("stampede_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A method as a label: the standard ones by name, anything else `other`, so that made-up
/// methods cannot add series.
fn method_label(method: &Method) -> &'static str {
    [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
    ]
    .into_iter()
    .find(|known| *known == method.as_str())
    .unwrap_or("other")
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn scrape(State(state): State<AppState>) -> Response {
    match state.bus.backlog().await {
        Ok(backlog) => gauge!("stampede_outbox_backlog").set(backlog as f64),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot measure the outbox"),
    }
    gauge!("stampede_sse_streams").set(state.limits.open_streams() as f64);
    gauge!("stampede_pubsub_channels").set(state.cache.subscribed_channels() as f64);
    match state.bus.lags().await {
        Ok(lags) => {
            for (group, lag) in lags {
                gauge!("stampede_consumer_lag", "consumer" => group).set(lag as f64);
            }
        }
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot measure consumer lag"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
