//! A room's definition, kept in the database with its rate history: what an admin created and
//! changed, and what every instance reads to compute the admissions due
//! ([`Schedule`](crate::Schedule)).

pub mod change;
pub mod close;
pub mod create;

use chrono::{DateTime, Utc};
use db::{on_db, sqlx, Db};
use serde::Serialize;

use crate::{
    order::Seed,
    room::{RoomError, RoomStatus},
    schedule::{Change, Schedule},
};

/// Why a room closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClosedReason {
    /// Its sale sold out.
    SoldOut,
    ClosedByAdmin,
}

impl ClosedReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::SoldOut => "SOLD_OUT",
            Self::ClosedByAdmin => "CLOSED_BY_ADMIN",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "SOLD_OUT" => Some(Self::SoldOut),
            "CLOSED_BY_ADMIN" => Some(Self::ClosedByAdmin),
            _ => None,
        }
    }
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub id: i64,
    pub name: String,
    pub coupon_id: Option<i64>,
    pub product_id: Option<i64>,
    pub max_active: Option<i64>,
    pub admission_secs: i64,
    pub seed: Seed,
    pub closed_reason: Option<ClosedReason>,
    pub closed_at: Option<DateTime<Utc>>,
    pub schedule: Schedule,
}

impl Room {
    /// Its status at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> RoomStatus {
        let paused = self.schedule.current().paused;
        RoomStatus::at(
            self.schedule.opens_at(),
            paused,
            self.closed_at.is_some(),
            now,
        )
    }

    /// The seed as published: only once the room has opened (before, it would tell the order).
    pub fn published_seed(&self, now: DateTime<Utc>) -> Option<String> {
        (now >= self.schedule.opens_at()).then(|| self.seed.to_hex())
    }
}

/// A `rooms` row.
#[derive(sqlx::FromRow)]
struct RoomRow {
    id: i64,
    name: String,
    coupon_id: Option<i64>,
    product_id: Option<i64>,
    opens_at: DateTime<Utc>,
    max_active: Option<i64>,
    admission_secs: i64,
    shuffle_seed: String,
    closed_reason: Option<String>,
    closed_at: Option<DateTime<Utc>>,
}

/// A `room_rate_changes` row.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    at: DateTime<Utc>,
    admit_per_second: i64,
    paused: bool,
}

/// The room `id`, with its rate history.
pub async fn find(db: &Db, id: i64) -> Result<Room, RoomError> {
    let row: Option<RoomRow> = on_db!(db, c => sqlx::query_as(
        "SELECT id, name, coupon_id, product_id, opens_at, max_active, admission_secs, \
         shuffle_seed, closed_reason, closed_at FROM rooms WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await)?;
    let row = row.ok_or(RoomError::NotFound)?;
    let changes: Vec<ChangeRow> = on_db!(db, c => sqlx::query_as(
        "SELECT at, admit_per_second, paused FROM room_rate_changes WHERE room_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(c)
    .await)?;
    let changes = changes
        .into_iter()
        .map(|change| Change {
            at: change.at,
            per_second: change.admit_per_second as u32,
            paused: change.paused,
        })
        .collect();
    Ok(Room {
        id: row.id,
        name: row.name,
        coupon_id: row.coupon_id,
        product_id: row.product_id,
        max_active: row.max_active,
        admission_secs: row.admission_secs,
        seed: Seed::from_hex(&row.shuffle_seed)
            .ok_or_else(|| RoomError::Unknown(anyhow::anyhow!("room {id}: a malformed seed")))?,
        closed_reason: row.closed_reason.as_deref().and_then(ClosedReason::parse),
        closed_at: row.closed_at,
        schedule: Schedule::from_changes(row.opens_at, changes),
    })
}
