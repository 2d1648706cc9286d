//! Changing a running room's rate, cap or pause: a closed room is not changed; a rate or pause
//! change is appended to the history from `now`, never rewriting what was due before.

use chrono::{DateTime, Utc};
use db::{exec, on_tx, sqlx, Db};
use serde::Deserialize;

use super::{find, Room};
use crate::room::{RoomError, MAX_ADMIT_PER_SECOND};

/// What an admin changes (`PATCH /api/admin/rooms/{roomId}`); absent fields stay.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomChange {
    /// Admissions a second from now on, 1 to 100,000.
    #[schema(minimum = 1, maximum = 100_000)]
    pub admit_per_second: Option<i64>,
    /// At most this many admissions unspent at once.
    #[schema(minimum = 1)]
    pub max_active: Option<i64>,
    /// `true` admits nobody and keeps every place; `false` resumes.
    pub paused: Option<bool>,
}

impl RoomChange {
    fn validate(&self) -> Result<(), RoomError> {
        let invalid = |field, message| Err(RoomError::Invalid { field, message });
        if self
            .admit_per_second
            .is_some_and(|rate| !(1..=MAX_ADMIT_PER_SECOND).contains(&rate))
        {
            return invalid("admitPerSecond", "must be 1 to 100,000");
        }
        if self.max_active.is_some_and(|cap| cap < 1) {
            return invalid("maxActive", "must be at least 1");
        }
        Ok(())
    }
}

/// Applies `change` to the room `id` as of `now`.
pub async fn change(
    db: &Db,
    id: i64,
    change: &RoomChange,
    now: DateTime<Utc>,
) -> Result<Room, RoomError> {
    change.validate()?;
    let mut tx = db.begin().await?;
    // The room's row first: it serializes changes to one room, and says whether it is closed.
    let closed: Option<Option<DateTime<Utc>>> = on_tx!(tx, c => sqlx::query_scalar(
        "UPDATE rooms SET max_active = COALESCE($2, max_active) WHERE id = $1 RETURNING closed_at",
    )
    .bind(id)
    .bind(change.max_active)
    .fetch_optional(c)
    .await)?;
    match closed {
        None => return Err(RoomError::NotFound),
        Some(Some(_)) => return Err(RoomError::Closed),
        Some(None) => {}
    }
    if change.admit_per_second.is_some() || change.paused.is_some() {
        let room = find(db, id).await?;
        let mut schedule = room.schedule;
        let recorded = schedule.change(
            now,
            change.admit_per_second.map(|rate| rate as u32),
            change.paused,
        );
        let seq = schedule.changes().len() as i32 - 1;
        // A change at the moment of the last one replaces it (the schedule keeps one per moment).
        exec!(
            tx,
            "DELETE FROM room_rate_changes WHERE room_id = $1 AND seq >= $2",
            id,
            seq
        )?;
        exec!(
            tx,
            "INSERT INTO room_rate_changes (room_id, seq, at, admit_per_second, paused) \
             VALUES ($1, $2, $3, $4, $5)",
            id,
            seq,
            recorded.at,
            i64::from(recorded.per_second),
            recorded.paused
        )?;
    }
    tx.commit().await?;
    find(db, id).await
}
