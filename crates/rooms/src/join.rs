//! Taking, reading and leaving a place. A user holds one place per room while it waits, is
//! admitted or is used (joining again returns it); a place that is read, or followed, is
//! seen, and a place seen lately is not dropped as abandoned.

use chrono::{DateTime, Utc};

use crate::{
    place::{PlaceRef, PlaceView},
    store::{Joined, Seen},
    Room, RoomError, Rooms,
};

/// `user` joins the room `room_id` at `now`: their place, and whether it is new.
pub async fn join(
    rooms: &Rooms,
    room_id: i64,
    user: i64,
    now: DateTime<Utc>,
) -> Result<(PlaceView, bool), RoomError> {
    let room = rooms.room(room_id).await?;
    if room.closed_at.is_some() {
        return Err(RoomError::Closed);
    }
    let joined = rooms
        .lines()
        .join(room.id, room.seed, user, now)
        .await
        .map_err(RoomError::Unavailable)?;
    match joined {
        Joined::Closed => Err(RoomError::Closed),
        Joined::Place(seen, new) => {
            let generation = seen.record.generation;
            Ok((view(rooms, &room, &seen, generation, now)?, new))
        }
    }
}

/// `user`'s latest place in the room `room_id`.
pub async fn mine(
    rooms: &Rooms,
    room_id: i64,
    user: i64,
    now: DateTime<Utc>,
) -> Result<PlaceView, RoomError> {
    let room = rooms.room(room_id).await?;
    let seen = read(rooms, &room, user, now).await?;
    let generation = seen.record.generation;
    view(rooms, &room, &seen, generation, now)
}

/// The place `place_id` names (its id is the capability).
pub async fn find(
    rooms: &Rooms,
    place_id: &str,
    now: DateTime<Utc>,
) -> Result<PlaceView, RoomError> {
    Ok(look_up(rooms, place_id, now).await?.2)
}

/// What `place_id` names, the user's latest place as the line keeps it (seen now), and the
/// named place as the API shows it.
pub(crate) async fn look_up(
    rooms: &Rooms,
    place_id: &str,
    now: DateTime<Utc>,
) -> Result<(PlaceRef, Seen, PlaceView), RoomError> {
    let place = rooms.0.key.check(place_id).ok_or(RoomError::NoPlace)?;
    let room = rooms.room(place.room).await.map_err(|error| match error {
        RoomError::NotFound => RoomError::NoPlace,
        other => other,
    })?;
    let seen = read(rooms, &room, place.user, now).await?;
    let view = view(rooms, &room, &seen, place.generation, now)?;
    Ok((place, seen, view))
}

/// `user` leaves the room `room_id`: a waiting place is skipped from now on, an unspent
/// admission is given up. Leaving twice, or holding nothing to leave, is not an error.
pub async fn leave(rooms: &Rooms, room_id: i64, user: i64) -> Result<(), RoomError> {
    let room = rooms.room(room_id).await?;
    rooms
        .lines()
        .leave(room.id, user)
        .await
        .map_err(RoomError::Unavailable)?;
    Ok(())
}

/// `user`'s latest place in `room`, seen now.
async fn read(
    rooms: &Rooms,
    room: &Room,
    user: i64,
    now: DateTime<Utc>,
) -> Result<Seen, RoomError> {
    let places = rooms
        .lines()
        .places(room.id, &[user], now, true)
        .await
        .map_err(RoomError::Unavailable)?;
    places
        .into_iter()
        .flatten()
        .next()
        .ok_or(RoomError::NoPlace)
}

/// The place `generation` of `seen`'s user, as the API shows it.
pub(crate) fn view(
    rooms: &Rooms,
    room: &Room,
    seen: &Seen,
    generation: u32,
    now: DateTime<Utc>,
) -> Result<PlaceView, RoomError> {
    let pace = rooms.0.paces.pace(room, now);
    PlaceView::of(&rooms.0.key, room, seen, generation, pace).ok_or(RoomError::NoPlace)
}
