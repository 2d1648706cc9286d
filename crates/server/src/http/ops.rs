//! The live operations page: `GET /ops` serves one static HTML file (no build step, no script
//! from elsewhere); the page logs an admin in and follows `GET /api/admin/ops/events`, which
//! sends a snapshot a second: coupon drops (issued, remaining, finished tasks) and this
//! instance's issue requests by outcome, the saga funnel (orders by status), the top products,
//! the outbox backlog, consumer lag and dead letters, and the waiting rooms (the page plots
//! each line's length and admissions a second over the last minutes). Reading it costs a few counts a second,
//! only while someone watches.

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::{sse::Event, Sse},
};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;

use super::{auth::StreamCaller, error::ApiError, sse};
use crate::state::AppState;

/// How often the stream sends a snapshot.
const TICK: Duration = Duration::from_secs(1);

/// The operations page (public: it holds no data; the stream it follows is for admins).
#[utoipa::path(get, path = "/ops", tag = "operations",
    responses((status = 200, description = "the live operations page", content_type = "text/html")))]
pub async fn page() -> axum::response::Response {
    super::pages::ops_page()
}

/// One look at the deployment.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    /// The newest coupons.
    #[schema(value_type = Vec<Object>)]
    pub coupons: Vec<coupons::definition::CouponDrop>,
    /// Issue requests this instance answered since it started, by outcome.
    pub coupon_requests: BTreeMap<String, u64>,
    /// Orders by status.
    pub orders: BTreeMap<String, i64>,
    /// The popular products (3 days, top 5), as `GET /api/products/popular` answers.
    #[schema(value_type = Vec<ranking::PopularProduct>)]
    pub top_products: serde_json::Value,
    pub outbox_backlog: i64,
    /// Events waiting per consumer group run by this instance.
    pub consumer_lag: BTreeMap<String, i64>,
    /// Dead letters waiting for replay, per consumer group.
    pub dead_letters: BTreeMap<String, i64>,
    /// The waiting rooms not closed, or closed in the last minutes.
    pub rooms: Vec<rooms::definition::RoomView>,
}

async fn snapshot(state: &AppState) -> anyhow::Result<Snapshot> {
    let top = ranking::popular::popular_json(&state.ranking, 3, 5).await?;
    Ok(Snapshot {
        at: Utc::now(),
        coupons: coupons::definition::drops(&state.db, 5).await?,
        coupon_requests: state
            .coupons
            .request_outcomes()
            .into_iter()
            .map(|(outcome, n)| (outcome.to_owned(), n))
            .collect(),
        orders: orders::find::status_counts(&state.db)
            .await?
            .into_iter()
            .collect(),
        top_products: serde_json::from_slice(&top)?,
        outbox_backlog: state.bus.backlog().await?,
        consumer_lag: state.bus.lags().await?.into_iter().collect(),
        dead_letters: eventbus::dead_letters::pending_by_consumer(&state.db)
            .await?
            .into_iter()
            .collect(),
        rooms: rooms::report::followed(&state.rooms, Utc::now()).await?,
    })
}

/// A snapshot now and every second after (`event: snapshot`, `data`: a [`Snapshot`]), for
/// admins; a browser `EventSource` (which sends no headers) passes a stream ticket as
/// `?ticket=`.
#[utoipa::path(get, path = "/api/admin/ops/events", tag = "operations", security(("bearer" = [])),
    params(("ticket" = Option<String>, Query, description = "a stream ticket (`POST /api/stream-tickets`), for clients that cannot send headers")),
    responses((status = 200, description = "`event: snapshot` every second", content_type = "text/event-stream", body = Snapshot),
        (status = 401, body = super::error::Problem), (status = 403, body = super::error::Problem),
        (status = 503, description = "`OVERLOADED`: too many open streams", body = super::error::Problem)))]
pub async fn events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require_admin()?;
    let slot = state.limits.open_stream(Some(caller.user_id))?;
    let stream = futures::stream::unfold((state.clone(), true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        let event = match snapshot(&state).await {
            Ok(snapshot) => Event::default()
                .event("snapshot")
                .json_data(snapshot)
                .unwrap_or_default(),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "operations snapshot failed");
                Event::default().event("unavailable").data("{}")
            }
        };
        Some((Ok(event), (state, false)))
    });
    Ok(sse::sse(&state, slot, stream))
}
