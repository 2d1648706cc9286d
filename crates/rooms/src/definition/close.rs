//! Closing a room: once, for one reason; its sale's guard is lifted and another room may stand
//! in front of the sale.

use chrono::{DateTime, Utc};
use db::{exec, Db};

use super::{find, ClosedReason, Room};
use crate::room::RoomError;

/// Closes the room `id` for `reason` as of `now`; a room already closed is returned as it is.
pub async fn close(
    db: &Db,
    id: i64,
    reason: ClosedReason,
    now: DateTime<Utc>,
) -> Result<Room, RoomError> {
    let mut tx = db.begin().await?;
    exec!(
        tx,
        "UPDATE rooms SET closed_at = $2, closed_reason = $3 WHERE id = $1 AND closed_at IS NULL",
        id,
        now,
        reason.as_str()
    )?;
    tx.commit().await?;
    find(db, id).await
}
