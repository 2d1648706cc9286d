//! Orders: place (202, the saga runs on), read, follow over SSE, pay, cancel.

use std::convert::Infallible;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{
        sse::{Event, Sse},
        Response,
    },
};
use chrono::Utc;
use futures::{Stream, StreamExt as _};
use orders::{find::OrderPage, pay::Payment, place::NewOrder, Order, OrderError};

use super::{
    auth::{Caller, StreamCaller},
    error::{path_id, ActionBody, ApiError, AppJson, AppPath, AppQuery, Problem},
    idempotency::{self, IdempotencyKey, Stored},
    sse,
    users::existing_user_id,
    PageQuery,
};
use crate::{limits::Rate, state::AppState};

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match &error {
            OrderError::Invalid { field, message } => ApiError::invalid(field, message),
            OrderError::NotFound => ApiError::not_found("no such order"),
            OrderError::NotPayable(_) => {
                ApiError::new(StatusCode::CONFLICT, "ORDER_NOT_PAYABLE", error.to_string())
            }
            OrderError::NotCancellable(_) => ApiError::new(
                StatusCode::CONFLICT,
                "ORDER_NOT_CANCELLABLE",
                error.to_string(),
            ),
            OrderError::InsufficientPoints { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "INSUFFICIENT_POINTS",
                error.to_string(),
            ),
            OrderError::TooManyOpenOrders(_) => ApiError::new(
                StatusCode::CONFLICT,
                "TOO_MANY_OPEN_ORDERS",
                error.to_string(),
            ),
            OrderError::Unknown(_) => ApiError::internal(error),
        }
    }
}

/// Order `segment` if the caller may see it: its owner, or an admin.
async fn visible_order(
    state: &AppState,
    caller: &Caller,
    segment: &str,
) -> Result<Order, ApiError> {
    let order = orders::find::find(state.orders.db(), path_id(segment, "order")?).await?;
    caller.user(&order.user_id.to_string())?;
    Ok(order)
}

/// Places an order; honours `Idempotency-Key`. The answer is `202` with the `PENDING` order:
/// stock, coupon and pricing follow asynchronously (poll the order or follow its `/events`).
#[utoipa::path(post, path = "/api/orders", tag = "orders", request_body = NewOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry key, up to 255 characters")),
    security(("bearer" = [])),
    responses((status = 202, description = "accepted, `PENDING`; `Location: /api/orders/{id}`", body = Order),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, description = "an unknown product option", body = Problem),
        (status = 409, description = "`TOO_MANY_OPEN_ORDERS`: the user holds the maximum of unpaid orders", body = Problem),
        (status = 422, description = "1–50 items, quantity 1–1000, no duplicate option; or `IDEMPOTENCY_KEY_REUSED`", body = Problem),
        (status = 429, description = "`RATE_LIMITED`: too many orders by this user (`Retry-After`)", body = Problem)))]
pub async fn place(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    AppJson(body): AppJson<NewOrder>,
) -> Result<Response, ApiError> {
    body.validate()?;
    state
        .limits
        .check_rate(&state.cache, Rate::Orders, &caller.user_id.to_string())
        .await?;
    let wanted: Vec<(i64, i64)> = body
        .items
        .iter()
        .map(|line| (line.product_option_id, line.quantity))
        .collect();
    let lines = catalog::product::order_lines(state.catalog.db(), &wanted).await?;
    let (coupon, context) = (body.user_coupon_id, state.orders.clone());
    // The admission is claimed inside the effect, so that a replay of an accepted request
    // (same Idempotency-Key) answers its 202 again instead of asking for a second admission.
    let sales: Vec<rooms::Sale> = lines
        .iter()
        .map(|line| rooms::Sale::Product(line.product_id))
        .collect();
    let claimed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (room_context, claim_slot) = (state.rooms.clone(), claimed.clone());
    let placed = idempotency::once(
        &state.db,
        &key,
        "orders.place",
        caller.user_id,
        &body,
        |tx| {
            Box::pin(async move {
                let now = Utc::now();
                let admission = rooms::guard::claim(
                    &room_context,
                    &sales,
                    caller.user_id,
                    caller.is_admin,
                    now,
                )
                .await?;
                *claim_slot.lock().expect("claim slot") = Some(admission);
                let order =
                    orders::place::place(&context, tx, caller.user_id, &lines, coupon).await?;
                let location = format!("/api/orders/{}", order.id);
                Ok(Stored::new(StatusCode::ACCEPTED, order)?.located(location))
            })
        },
    )
    .await;
    let admission = claimed.lock().expect("claim slot").take();
    if let Some(admission) = admission {
        rooms::guard::settle(&state.rooms, admission, placed.is_ok()).await;
    }
    placed
}

/// An order (its owner or an admin).
#[utoipa::path(get, path = "/api/orders/{orderId}", tag = "orders",
    params(("orderId" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Order), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(order): AppPath<String>,
) -> Result<AppJson<Order>, ApiError> {
    Ok(AppJson(visible_order(&state, &caller, &order).await?))
}

/// A user's orders, newest first, a page at a time (`page` from 0, `size` 1–100, default 20),
/// with `total`, the number of the user's orders in all.
#[utoipa::path(get, path = "/api/users/{userId}/orders", tag = "orders",
    params(("userId" = String, Path, description = "a user id or `me`"), PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = OrderPage), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn user_orders(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(user): AppPath<String>,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<AppJson<OrderPage>, ApiError> {
    let user_id = existing_user_id(&state, &caller, &user).await?;
    let orders = orders::find::for_user(state.orders.db(), user_id, query.page, query.size).await?;
    Ok(AppJson(orders))
}

/// Pays an `AWAITING_PAYMENT` order with the owner's points; honours `Idempotency-Key`.
/// `INSUFFICIENT_POINTS` leaves the order payable until its deadline.
#[utoipa::path(post, path = "/api/orders/{orderId}/payment", tag = "orders",
    params(("orderId" = i64, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "retry key, up to 255 characters")),
    request_body(content = Object, description = "`{}`, or no body"), security(("bearer" = [])),
    responses((status = 200, body = Payment), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`INSUFFICIENT_POINTS` or `ORDER_NOT_PAYABLE`", body = Problem),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`", body = Problem)))]
pub async fn pay(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    AppPath(order): AppPath<String>,
    _: ActionBody,
) -> Result<Response, ApiError> {
    let order = visible_order(&state, &caller, &order).await?;
    let context = state.orders.clone();
    idempotency::once(
        &state.db,
        &key,
        "orders.pay",
        caller.user_id,
        &order.id,
        |tx| {
            Box::pin(async move {
                let payment = orders::pay::pay(&context, tx, order.id).await?;
                Stored::new(StatusCode::OK, payment)
            })
        },
    )
    .await
}

/// Cancels a `PENDING` or `AWAITING_PAYMENT` order; its stock and coupon are given back.
#[utoipa::path(post, path = "/api/orders/{orderId}/cancel", tag = "orders",
    params(("orderId" = i64, Path)), request_body(content = Object, description = "`{}`, or no body"),
    security(("bearer" = [])),
    responses((status = 200, description = "`CANCELLED`", body = Order), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`ORDER_NOT_CANCELLABLE`", body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(order): AppPath<String>,
    _: ActionBody,
) -> Result<AppJson<Order>, ApiError> {
    let order = visible_order(&state, &caller, &order).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let cancelled = orders::cancel::cancel(&state.orders, &mut tx, order.id).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(AppJson(cancelled))
}

/// The order's status changes as SSE events `status` (id: the change's version, data: the
/// order): the current one first, then each change, ending after a terminal status. With
/// `Last-Event-ID`, only the changes after it. Takes the token as a bearer header or, for
/// `EventSource`, a stream ticket as `?ticket=` (`POST /api/stream-tickets`).
#[utoipa::path(get, path = "/api/orders/{orderId}/events", tag = "orders",
    params(("orderId" = i64, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "the `id` of the last change received; any other value is ignored"),
        ("ticket" = Option<String>, Query, description = "a stream ticket (`POST /api/stream-tickets`), for `EventSource`: used once, within 30 s")),
    security(("bearer" = [])),
    responses((status = 200, description = "`text/event-stream`: events `status` with the order", content_type = "text/event-stream", body = String),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 429, description = "`RATE_LIMITED`: the user has the maximum of open streams", body = Problem),
        (status = 503, description = "`OVERLOADED`: too many open streams (`Retry-After`)", body = Problem)))]
pub async fn order_events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    AppPath(order): AppPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let order = visible_order(&state, &caller, &order).await?;
    let slot = state.limits.open_stream(Some(caller.user_id))?;
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let changes = orders::follow::follow(&state.orders, order.id, last_seen).await?;
    let stream = changes.map(|change| {
        Ok(Event::default()
            .event("status")
            .id(change.version.to_string())
            .data(change.order))
    });
    Ok(sse::sse(&state, slot, stream))
}
