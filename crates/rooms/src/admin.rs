//! Creating, changing and closing rooms: a room stands only in front of a sale that exists,
//! and every instance hears of a change at once (this one reads the rooms again before
//! answering; the others are woken through the cache, and read them within a second anyway).

use chrono::{DateTime, Utc};

use crate::{
    definition::{self, change::RoomChange},
    ClosedReason, NewRoom, Room, RoomError, Rooms,
};

/// The cache channel on which instances announce that the rooms changed.
pub const CHANNEL: &str = "rooms:changed";

/// Stores `new` (its sale must exist) and prepares its line.
pub async fn create(rooms: &Rooms, new: &NewRoom, now: DateTime<Utc>) -> Result<Room, RoomError> {
    new.validate()?;
    if !rooms.0.sales.exists(new.sale()).await? {
        return Err(RoomError::NoSuchSale);
    }
    let room = definition::create::create(&rooms.0.db, new, now).await?;
    // The tick prepares lines too: a cache that is down now does not undo the room.
    if let Err(error) = rooms.0.lines.prepare(room.id, room.seed).await {
        tracing::warn!(room = room.id, %error, "the new room's line is not prepared yet");
    }
    announce(rooms, now).await;
    Ok(room)
}

/// Applies `change` to the room `id` from `now` on.
pub async fn change(
    rooms: &Rooms,
    id: i64,
    change: &RoomChange,
    now: DateTime<Utc>,
) -> Result<Room, RoomError> {
    let room = definition::change::change(&rooms.0.db, id, change, now).await?;
    announce(rooms, now).await;
    Ok(room)
}

/// Closes the room `id` for `reason`: its guard is lifted, and its waiting places are closed
/// (here, or by the next tick of any instance if the cache cannot be reached now).
pub async fn close(
    rooms: &Rooms,
    id: i64,
    reason: ClosedReason,
    now: DateTime<Utc>,
) -> Result<Room, RoomError> {
    let room = definition::close::close(&rooms.0.db, id, reason, now).await?;
    if let Err(error) = rooms.0.lines.close(id).await {
        tracing::warn!(room = id, %error, "the closed room's line is not closed yet");
    }
    announce(rooms, now).await;
    Ok(room)
}

/// Reads the rooms again here and wakes the other instances.
async fn announce(rooms: &Rooms, now: DateTime<Utc>) {
    if let Err(error) = rooms.0.registry.refresh(&rooms.0.db, now).await {
        tracing::warn!(%error, "reading the rooms again");
    }
    if let Err(error) = rooms.0.cache.publish(CHANNEL, "1").await {
        tracing::warn!(%error, "announcing a change of the rooms");
    }
}
