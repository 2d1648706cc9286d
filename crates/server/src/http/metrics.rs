//! Prometheus metrics: per-route HTTP counters and latency histograms, and the gauges refreshed
//! at a scrape (outbox backlog, consumer lag, dead letters pending, open orders by status: at
//! most once a second; open SSE streams, database connections: every scrape). Event counters and the event delay histogram
//! (written → applied, per consumer group: each saga hop) are recorded by `eventbus`.
//! Latencies are histograms with fixed buckets, so they add up across instances.

use std::{
    collections::HashMap,
    sync::{OnceLock, RwLock},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// The process-wide recorder (installed once, shared by every app in a test process).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ],
                )
                .expect("valid buckets")
                // A wait in a line is counted in minutes, not milliseconds.
                .set_buckets_for_metric(
                    Matcher::Full("stampede_room_wait_seconds".into()),
                    &[
                        1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_200.0, 1_800.0, 3_600.0,
                    ],
                )
                .expect("valid buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once");
            describe();
            handle
        })
        .clone()
}

/// What a metric is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    /// In seconds, with the buckets above.
    Histogram,
}

/// Every metric the server exports, with its help text (dashboards and alert rules may name
/// only these: a test checks).
pub const METRICS: &[(Kind, &str, &str)] = &[
    (Kind::Counter, "stampede_http_requests_total", "HTTP requests answered, by method, route template and status"),
    (Kind::Histogram, "stampede_http_request_duration_seconds", "HTTP request latency, by method, route template and status"),
    (Kind::Counter, "stampede_http_shed_total", "Requests refused 503 OVERLOADED because too many were in flight"),
    (Kind::Counter, "stampede_http_timeouts_total", "Requests that ran past the request deadline (503 UNAVAILABLE)"),
    (Kind::Counter, "stampede_rate_limited_total", "Requests refused 429 RATE_LIMITED, by limit"),
    (Kind::Counter, "stampede_password_hash_rejected_total", "Sign-ups and logins refused because the password hashing queue was full or too slow"),
    (Kind::Gauge, "stampede_sse_streams", "Open server-sent event streams in this process"),
    (Kind::Counter, "stampede_sse_refused_total", "Server-sent event streams refused at the stream limits"),
    (Kind::Gauge, "stampede_pubsub_channels", "Cache pub/sub channels this process listens on (one per followed order or task)"),
    (Kind::Gauge, "stampede_db_connections", "Database connections of the pool that writes, busy or idle"),
    (Kind::Histogram, "stampede_db_write_wait_seconds", "Time a write transaction waited for its connection (on SQLite, for the one writer)"),
    (Kind::Histogram, "stampede_db_write_hold_seconds", "Time a write transaction held its connection, begin to commit or rollback"),
    (Kind::Counter, "stampede_events_published_total", "Events the bus acknowledged, by topic"),
    (Kind::Counter, "stampede_events_consumed_total", "Events a consumer group applied, by group and topic"),
    (Kind::Counter, "stampede_events_duplicate_total", "Redeliveries a consumer group recognised and skipped, by group and topic"),
    (Kind::Counter, "stampede_events_failed_total", "Failed attempts at an event, by group and topic (retried, or dead-lettered after the last)"),
    (Kind::Counter, "stampede_events_dead_lettered_total", "Events a consumer group gave up on, by group and topic"),
    (Kind::Counter, "stampede_events_waiting_total", "Attempts put off because a dependency was unreachable (no attempt counted), by group"),
    (Kind::Histogram, "stampede_event_delay_seconds", "From an event being written to a consumer group applying it: each saga hop, by group and topic"),
    (Kind::Gauge, "stampede_outbox_backlog", "Events written but not yet published"),
    (Kind::Gauge, "stampede_consumer_lag", "Events published but not yet applied, by consumer group"),
    (Kind::Gauge, "stampede_consumer_stalled", "1 while a consumer group has lag and handles nothing (it is being restarted)"),
    (Kind::Counter, "stampede_consumer_restarts_total", "Consumer restarts for a stall, by group"),
    (Kind::Gauge, "stampede_dead_letters_pending", "Dead letters not yet replayed, by consumer group"),
    (Kind::Gauge, "stampede_orders_open", "Orders PENDING (saga running) or AWAITING_PAYMENT, by status"),
    (Kind::Counter, "stampede_saga_outcomes_total", "Order status changes, by new status and failure reason"),
    (Kind::Gauge, "stampede_sagas_stuck", "Orders PENDING longer than the stuck limit"),
    (Kind::Counter, "stampede_saga_redrives_total", "Stuck sagas whose order-created was published again"),
    (Kind::Histogram, "stampede_order_pricing_seconds", "Time to price an order once its coupon step is done"),
    (Kind::Counter, "stampede_coupon_issue_requests_total", "Coupon issue requests, by outcome (accepted, sold_out, already_requested, held, unavailable, ...)"),
    (Kind::Counter, "stampede_coupon_tasks_total", "Coupon issue tasks finished, by result"),
    (Kind::Counter, "stampede_coupon_requests_withdrawn_total", "Admitted coupon requests withdrawn because their event never reached the bus"),
    (Kind::Counter, "stampede_coupon_units_reopened_total", "Coupon units the gate had lost count of (a write the cache lost) and the worker reopened"),
    (Kind::Counter, "stampede_ranking_lines_counted_total", "Sold order lines counted into the popular-products ranking"),
    (Kind::Counter, "stampede_ranking_rebuilds_total", "Rebuilds of the popular-products ranking from paid orders"),
    (Kind::Gauge, "stampede_room_waiting", "Places waiting in a room's line (the line's figure: every instance reports the same), by room"),
    (Kind::Counter, "stampede_room_admitted_total", "Admissions this instance's room ticks made, by room"),
    (Kind::Counter, "stampede_room_dropped_total", "Waiting places this instance dropped as abandoned, by room"),
    (Kind::Histogram, "stampede_room_wait_seconds", "From joining a room's line to being admitted, by room"),
];

/// Gives every metric its help text, shown on `/metrics`.
fn describe() {
    for (kind, name, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help),
        }
    }
}

/// Records count and latency of each request under its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    count_request(method, route, response.status().as_u16(), started.elapsed());
    response
}

/// The request counter and latency histogram of one route template, by method and status.
type Series = HashMap<String, Vec<(&'static str, u16, Counter, Histogram)>>;

/// Counts one answered request and how long it took until its response began. Each series'
/// handles are made once: making a metric's labels costs more than a request answered from
/// memory (routes are templates and methods a fixed set, so the series are few).
pub(crate) fn count_request(method: &'static str, route: &str, status: u16, took: Duration) {
    static SERIES: OnceLock<RwLock<Series>> = OnceLock::new();
    let series = SERIES.get_or_init(Default::default);
    let record = |(counter, histogram): (&Counter, &Histogram)| {
        counter.increment(1);
        histogram.record(took.as_secs_f64());
    };
    let known = series.read().expect("request series");
    let found = known
        .get(route)
        .and_then(|list| list.iter().find(|(m, s, ..)| *m == method && *s == status));
    if let Some((.., counter, histogram)) = found {
        return record((counter, histogram));
    }
    drop(known);
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let counter = counter!("stampede_http_requests_total", &labels);
    let histogram = histogram!("stampede_http_request_duration_seconds", &labels);
    record((&counter, &histogram));
    let mut known = series.write().expect("request series");
    let list = known.entry(route.to_owned()).or_default();
    if !list.iter().any(|(m, s, ..)| *m == method && *s == status) {
        list.push((method, status, counter, histogram));
    }
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
    gauge!("stampede_sse_streams").set(state.limits.open_streams() as f64);
    gauge!("stampede_pubsub_channels").set(state.cache.subscribed_channels() as f64);
    let (size, idle) = state.db.pool_use();
    gauge!("stampede_db_connections", "state" => "idle").set(idle as f64);
    gauge!("stampede_db_connections", "state" => "busy").set(size.saturating_sub(idle) as f64);
    // A dozen queries: at most once a second, however many scrapes come.
    state.metrics_refresh.run(|| refresh_gauges(&state)).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The gauges read from the database and the bus.
async fn refresh_gauges(state: &AppState) {
    match state.bus.backlog().await {
        Ok(backlog) => gauge!("stampede_outbox_backlog").set(backlog as f64),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot measure the outbox"),
    }
    match state.bus.lags().await {
        Ok(lags) => {
            for (group, lag) in lags {
                gauge!("stampede_consumer_lag", "consumer" => group).set(lag as f64);
            }
        }
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot measure consumer lag"),
    }
    match eventbus::dead_letters::pending_by_consumer(&state.db).await {
        Ok(pending) => {
            for (group, count) in pending {
                gauge!("stampede_dead_letters_pending", "consumer" => group).set(count as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot count dead letters"),
    }
    match orders::find::open_counts(&state.db).await {
        Ok(counts) => {
            for (status, count) in counts {
                gauge!("stampede_orders_open", "status" => status.as_str()).set(count as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot count open orders"),
    }
}
