//! Coupon tasks: the status of an issue request, and its result pushed over Server-Sent Events.
//!
//! A task id is a random UUID (122 random bits) handed only to the requester, and it is the
//! key to the task: these routes need no token, so a browser's `EventSource` (which cannot
//! send an `Authorization` header) can follow it.

use std::convert::Infallible;

use axum::{
    extract::State,
    response::sse::{Event, Sse},
};
use coupons::{CouponError, Task};
use futures::Stream;
use uuid::Uuid;

use super::{
    error::{ApiError, AppJson, AppPath, Problem},
    sse,
};
use crate::state::AppState;

fn task_id(segment: &str) -> Result<Uuid, ApiError> {
    segment
        .parse()
        .map_err(|_| ApiError::not_found("no such task"))
}

async fn find(state: &AppState, id: Uuid) -> Result<Task, ApiError> {
    coupons::issue::find_task(&state.coupons, id)
        .await
        .map_err(|error| match error {
            CouponError::NotFound => ApiError::not_found("no such task"),
            other => other.into(),
        })
}

/// An issue request's status: `PENDING`, then `SUCCESS` (with `userCouponId`) or `FAILED`
/// (with `reason`).
#[utoipa::path(get, path = "/api/coupon-tasks/{taskId}", tag = "coupons",
    params(("taskId" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, body = Problem)))]
pub async fn get_task(
    State(state): State<AppState>,
    AppPath(task): AppPath<String>,
) -> Result<AppJson<Task>, ApiError> {
    Ok(AppJson(find(&state, task_id(&task)?).await?))
}

/// The result of an issue request as one SSE event `result` (id: the task id), sent as soon as
/// the task is terminal — at once if it already is — after which the stream ends. Comment
/// lines are sent every 10 s while waiting. Works from any instance and after reconnecting.
#[utoipa::path(get, path = "/api/coupon-tasks/{taskId}/events", tag = "coupons",
    params(("taskId" = Uuid, Path)),
    responses((status = 200, description = "`text/event-stream`: event `result` with the task", content_type = "text/event-stream", body = String),
        (status = 404, body = Problem),
        (status = 503, description = "`OVERLOADED`: too many open streams (`Retry-After`)", body = Problem)))]
pub async fn task_events(
    State(state): State<AppState>,
    AppPath(task): AppPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = task_id(&task)?;
    // An unknown task is refused before anything is kept for it, and a terminal one is sent
    // without subscribing.
    let task = find(&state, id).await?;
    let slot = state.limits.open_stream(None)?;
    let coupons = state.coupons.clone();
    let result = async move {
        let task = coupons::issue::follow(&coupons, task).await;
        let event = Event::default()
            .event("result")
            .id(task.task_id.to_string())
            .json_data(&task)
            .expect("a task serializes");
        Ok(event)
    };
    Ok(sse::sse(&state, slot, futures::stream::once(result)))
}
