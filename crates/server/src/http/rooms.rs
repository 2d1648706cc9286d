//! Waiting rooms: admins put a room in front of a sale; shoppers join its line, read and
//! follow their place (its id is the capability, as a coupon task's is: no token, so an
//! `EventSource` can follow it), and leave.

use std::convert::Infallible;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{
        sse::{Event, Sse},
        IntoResponse,
    },
};
use chrono::Utc;
use futures::{Stream, StreamExt as _};
use rooms::{
    definition::{change::RoomChange, RoomView},
    guard::GuardError,
    ClosedReason, NewRoom, PlaceView, Room, RoomError,
};

use super::{
    auth::{Admin, Caller},
    error::{path_id, ActionBody, ApiError, AppJson, AppPath, Problem},
    sse,
};
use crate::state::AppState;

impl From<RoomError> for ApiError {
    fn from(error: RoomError) -> Self {
        match error {
            RoomError::Invalid { field, message } => ApiError::invalid(field, message),
            RoomError::NotFound => ApiError::not_found("no such room"),
            RoomError::NoSuchSale => ApiError::not_found("no such coupon or product"),
            RoomError::NoPlace => ApiError::not_found("no such place"),
            RoomError::Exists => ApiError::new(
                StatusCode::CONFLICT,
                "ROOM_EXISTS",
                "the sale already has a room that is not closed",
            ),
            RoomError::Closed => {
                ApiError::new(StatusCode::CONFLICT, "ROOM_CLOSED", "the room is closed")
            }
            RoomError::Unavailable(error) => ApiError::unavailable_because(
                "the waiting room's line cannot be reached right now; retry",
                &error,
            ),
            RoomError::Unknown(error) => ApiError::internal(error),
        }
    }
}

impl From<GuardError> for ApiError {
    fn from(error: GuardError) -> Self {
        let with_room = |error: ApiError, room: i64| {
            let mut extra = serde_json::Map::new();
            extra.insert("roomId".into(), room.into());
            ApiError {
                extra: Some(extra),
                ..error
            }
        };
        match error {
            GuardError::Required { room } => with_room(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "ADMISSION_REQUIRED",
                    "this sale is behind a waiting room: join its line and wait to be admitted",
                ),
                room,
            ),
            GuardError::InUse { room } => with_room(
                ApiError::new(
                    StatusCode::CONFLICT,
                    "ADMISSION_IN_USE",
                    "another request is using this admission right now",
                ),
                room,
            ),
            GuardError::Unavailable(error) => ApiError::unavailable_because(
                "the waiting room in front of this sale cannot be reached; retry",
                &error,
            ),
        }
    }
}

/// The waiting room's page for shoppers: sign in, join, watch the place move, and make the
/// guarded request once admitted (public: it holds no data; the page reads the room's id from
/// its address).
#[utoipa::path(get, path = "/rooms/{roomId}", tag = "rooms",
    params(("roomId" = i64, Path)),
    responses((status = 200, description = "the waiting room's page", content_type = "text/html"),
        (status = 404, description = "not a room id", body = Problem)))]
pub async fn page(AppPath(room): AppPath<String>) -> Result<axum::response::Response, ApiError> {
    path_id(&room, "room")?;
    Ok(super::pages::room_page())
}

/// `room` as shown now, with its line's figures.
async fn shown(state: &AppState, room: &Room) -> Result<RoomView, ApiError> {
    let stats = state
        .rooms
        .lines()
        .stats(room.id)
        .await
        .map_err(RoomError::Unavailable)?;
    Ok(room.view(stats, Utc::now()))
}

/// Puts a waiting room in front of a coupon or a product (admins). From now until it closes,
/// the sale's guarded requests need an admission from it.
#[utoipa::path(post, path = "/api/admin/rooms", tag = "rooms", request_body = NewRoom,
    security(("bearer" = [])),
    responses((status = 201, body = RoomView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, description = "an unknown coupon or product", body = Problem),
        (status = 409, description = "`ROOM_EXISTS`: the sale already has a room that is not closed", body = Problem),
        (status = 422, description = "exactly one of couponId and productId; name 2–40; admitPerSecond 1–100,000; maxActive ≥ 1; admissionSecs 30–3,600", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    AppJson(body): AppJson<NewRoom>,
) -> Result<impl IntoResponse, ApiError> {
    let room = rooms::admin::create(&state.rooms, &body, Utc::now()).await?;
    Ok((StatusCode::CREATED, AppJson(shown(&state, &room).await?)))
}

/// Changes a room's rate, cap or pause from now on (admins); every instance follows within a
/// second.
#[utoipa::path(patch, path = "/api/admin/rooms/{roomId}", tag = "rooms", request_body = RoomChange,
    params(("roomId" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`ROOM_CLOSED`", body = Problem),
        (status = 422, body = Problem)))]
pub async fn change(
    State(state): State<AppState>,
    _: Admin,
    AppPath(room): AppPath<String>,
    AppJson(body): AppJson<RoomChange>,
) -> Result<AppJson<RoomView>, ApiError> {
    let id = path_id(&room, "room")?;
    let room = rooms::admin::change(&state.rooms, id, &body, Utc::now()).await?;
    Ok(AppJson(shown(&state, &room).await?))
}

/// Closes a room (admins): its guard is lifted and every waiting place is `CLOSED`.
#[utoipa::path(post, path = "/api/admin/rooms/{roomId}/close", tag = "rooms",
    params(("roomId" = i64, Path)), security(("bearer" = [])),
    request_body(content = Object, description = "`{}`, or no body"),
    responses((status = 200, body = RoomView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn close(
    State(state): State<AppState>,
    _: Admin,
    AppPath(room): AppPath<String>,
    _: ActionBody,
) -> Result<AppJson<RoomView>, ApiError> {
    let id = path_id(&room, "room")?;
    let room =
        rooms::admin::close(&state.rooms, id, ClosedReason::ClosedByAdmin, Utc::now()).await?;
    Ok(AppJson(shown(&state, &room).await?))
}

/// A room: its status, rate, and how many wait and were admitted.
#[utoipa::path(get, path = "/api/rooms/{roomId}", tag = "rooms",
    params(("roomId" = i64, Path)),
    responses((status = 200, body = RoomView), (status = 404, body = Problem)))]
pub async fn get_room(
    State(state): State<AppState>,
    AppPath(room): AppPath<String>,
) -> Result<AppJson<RoomView>, ApiError> {
    let room = state.rooms.room(path_id(&room, "room")?).await?;
    Ok(AppJson(shown(&state, &room).await?))
}

/// Joins a room's line: `201` with a new place, `200` with the place the caller already holds
/// (waiting, admitted or used: one purchase per person through a room).
#[utoipa::path(post, path = "/api/rooms/{roomId}/places", tag = "rooms",
    params(("roomId" = i64, Path)), security(("bearer" = [])),
    request_body(content = Object, description = "`{}`, or no body"),
    responses((status = 201, description = "a new place", body = PlaceView),
        (status = 200, description = "the place the caller holds", body = PlaceView),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`ROOM_CLOSED`", body = Problem)))]
pub async fn join(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(room): AppPath<String>,
    _: ActionBody,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_id(&room, "room")?;
    let (place, new) = rooms::join::join(&state.rooms, id, caller.user_id, Utc::now()).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, AppJson(place)))
}

/// The caller's place in a room's line.
#[utoipa::path(get, path = "/api/rooms/{roomId}/places/me", tag = "rooms",
    params(("roomId" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = PlaceView), (status = 401, body = Problem),
        (status = 404, description = "no such room, or not in its line", body = Problem)))]
pub async fn my_place(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(room): AppPath<String>,
) -> Result<AppJson<PlaceView>, ApiError> {
    let id = path_id(&room, "room")?;
    let place = rooms::join::mine(&state.rooms, id, caller.user_id, Utc::now()).await?;
    Ok(AppJson(place))
}

/// Leaves a room's line: a waiting place becomes `LEFT`, an unspent admission is given up.
#[utoipa::path(delete, path = "/api/rooms/{roomId}/places/me", tag = "rooms",
    params(("roomId" = i64, Path)), security(("bearer" = [])),
    responses((status = 204, description = "left (or nothing to leave)"),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn leave(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(room): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&room, "room")?;
    rooms::join::leave(&state.rooms, id, caller.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A place, by its id (no token: the id is the capability).
#[utoipa::path(get, path = "/api/room-places/{placeId}", tag = "rooms",
    params(("placeId" = String, Path)),
    responses((status = 200, body = PlaceView), (status = 404, body = Problem)))]
pub async fn get_place(
    State(state): State<AppState>,
    AppPath(place): AppPath<String>,
) -> Result<AppJson<PlaceView>, ApiError> {
    Ok(AppJson(
        rooms::join::find(&state.rooms, &place, Utc::now()).await?,
    ))
}

/// A place's stream: event `place` at once, then whenever its status or position changes (a
/// position at most once a second), ending when it stops waiting. With `Last-Event-ID`, the
/// state it names is not sent again.
#[utoipa::path(get, path = "/api/room-places/{placeId}/events", tag = "rooms",
    params(("placeId" = String, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "the `id` of the last event received")),
    responses((status = 200, description = "`text/event-stream`: events `place` with the place", content_type = "text/event-stream", body = String),
        (status = 404, body = Problem),
        (status = 503, description = "`OVERLOADED`: too many open streams (`Retry-After`)", body = Problem)))]
pub async fn place_events(
    State(state): State<AppState>,
    AppPath(place): AppPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // The stream's slot comes first: a crowd's connects skip the in-flight cap (`guard.rs`),
    // and the stream cap is what bounds them.
    let slot = state.limits.open_stream(None)?;
    let places = rooms::follow::follow(&state.rooms, &place, last).await?;
    let events = places.map(|place| {
        Ok(Event::default()
            .event("place")
            .id(place.event_id())
            .json_data(&place)
            .expect("a place serializes"))
    });
    Ok(sse::sse(&state, slot, events))
}
