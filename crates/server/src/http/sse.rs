//! The one way a route answers with a stream (order, coupon task, `/ops`): Server-Sent Events
//! with heartbeats, holding the stream's slot while open and ending when the server shuts down.
//! What a stream follows comes from its context (`orders::follow`, `coupons::issue::follow`).

use std::{convert::Infallible, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};

use crate::{limits::StreamSlot, state::AppState};

/// Comment lines keep idle streams (and the proxies in front of them) alive.
const HEARTBEAT: Duration = Duration::from_secs(10);

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
