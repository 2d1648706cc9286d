//! Orders: place (202, the saga runs on), read, follow over SSE, pay, cancel.

use std::{collections::VecDeque, convert::Infallible};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{
        sse::{Event, Sse},
        Response,
    },
};
use futures::Stream;
use orders::{
    find::{Change, OrderPage},
    pay::Payment,
    place::NewOrder,
    Line, Order, OrderError, OrderStatus,
};
use serde::Deserialize;

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
    let ids: Vec<i64> = body.items.iter().map(|l| l.product_option_id).collect();
    let known = catalog::product::options(state.catalog.db(), &ids).await?;
    let lines = body
        .items
        .iter()
        .map(|line| {
            let option = known
                .iter()
                .find(|o| o.id == line.product_option_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!("no product option {}", line.product_option_id))
                })?;
            Ok(Line {
                product_option_id: option.id,
                product_id: option.product_id,
                product_name: option.product_name.clone(),
                option_name: option.option_name.clone(),
                unit_price: option.price,
                quantity: line.quantity,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let (coupon, context) = (body.user_coupon_id, state.orders.clone());
    idempotency::once(
        &state.db,
        &key,
        "orders.place",
        caller.user_id,
        &body,
        |tx| {
            Box::pin(async move {
                let order =
                    orders::place::place(&context, tx, caller.user_id, &lines, coupon).await?;
                let location = format!("/api/orders/{}", order.id);
                Ok(Stored::new(StatusCode::ACCEPTED, order)?.located(location))
            })
        },
    )
    .await
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
    let (id, slot) = (order.id, state.limits.open_stream(Some(caller.user_id))?);
    // Subscribe before reading the changes, so a change stored in between still wakes us.
    let wake_ups = state.orders.cache().subscribe(&orders::order_channel(id));
    let claimed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = match claimed {
        // An id past the newest change (made up, or from another order) counts as the newest:
        // the stream follows the later changes and ends with the order, as for a real id.
        Some(claimed) => {
            let newest = orders::find::changes(state.orders.db(), id, None).await?;
            Some(newest.first().map_or(claimed, |c| claimed.min(c.version)))
        }
        None => None,
    };
    let pending: VecDeque<Change> = orders::find::changes(state.orders.db(), id, after)
        .await?
        .into();
    // A client that already has the terminal change gets an empty stream that ends.
    let done = pending.is_empty() && order.status.is_terminal();
    let follow = Follow {
        state: state.clone(),
        id,
        after,
        pending,
        wake_ups,
        done,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(change) = f.pending.pop_front() {
                f.after = Some(change.version);
                f.done = is_terminal(&change);
                let event = Event::default()
                    .event("status")
                    .id(change.version.to_string())
                    .data(change.order);
                return Some((Ok(event), f));
            }
            if f.done {
                return None;
            }
            sse::changed(&mut f.wake_ups).await;
            match orders::find::changes(f.state.orders.db(), f.id, f.after).await {
                Ok(changes) => f.pending.extend(changes),
                Err(error) => tracing::warn!(
                    order_id = f.id,
                    error = format!("{error:#}"),
                    "re-reading an order failed"
                ),
            }
        }
    });
    Ok(sse::sse(&state, slot, stream))
}

struct Follow {
    state: AppState,
    id: i64,
    after: Option<i64>,
    pending: VecDeque<Change>,
    wake_ups: cache::Subscription,
    done: bool,
}

fn is_terminal(change: &Change) -> bool {
    #[derive(Deserialize)]
    struct Status {
        status: OrderStatus,
    }
    serde_json::from_str::<Status>(&change.order).is_ok_and(|s| s.status.is_terminal())
}
