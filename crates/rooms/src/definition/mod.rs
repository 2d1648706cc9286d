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
    room::{RoomError, RoomStatus, Sale},
    schedule::{Change, Schedule},
    store::LineStats,
};

/// Why a room closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

    /// What the room stands in front of.
    pub fn sale(&self) -> Sale {
        match (self.coupon_id, self.product_id) {
            (Some(coupon), _) => Sale::Coupon(coupon),
            (None, Some(product)) => Sale::Product(product),
            (None, None) => unreachable!("the rooms table holds exactly one sale per room"),
        }
    }

    /// The seed as published: only once the room has opened (before, it would tell the order).
    pub fn published_seed(&self, now: DateTime<Utc>) -> Option<String> {
        (now >= self.schedule.opens_at()).then(|| self.seed.to_hex())
    }
}

/// A room as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomView {
    pub id: i64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<i64>,
    pub status: RoomStatus,
    pub opens_at: DateTime<Utc>,
    /// The rate set now (admissions a second).
    pub admit_per_second: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active: Option<i64>,
    pub admission_secs: i64,
    /// Places waiting now.
    pub waiting: u64,
    /// Admissions made since the room opened.
    pub admitted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_reason: Option<ClosedReason>,
    /// The shuffle seed (64 hex digits), published once the room has opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle_seed: Option<String>,
}

impl Room {
    /// The room as shown at `now`, with its line's figures.
    pub fn view(&self, stats: LineStats, now: DateTime<Utc>) -> RoomView {
        RoomView {
            id: self.id,
            name: self.name.clone(),
            coupon_id: self.coupon_id,
            product_id: self.product_id,
            status: self.status(now),
            opens_at: self.schedule.opens_at(),
            admit_per_second: self.schedule.current().per_second,
            max_active: self.max_active,
            admission_secs: self.admission_secs,
            waiting: stats.waiting,
            admitted: stats.admitted,
            closed_reason: self.closed_reason,
            shuffle_seed: self.published_seed(now),
        }
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
    room_id: i64,
    at: DateTime<Utc>,
    admit_per_second: i64,
    paused: bool,
}

const ROOM_COLUMNS: &str = "id, name, coupon_id, product_id, opens_at, max_active, \
    admission_secs, shuffle_seed, closed_reason, closed_at";

/// The room `id`, with its rate history.
pub async fn find(db: &Db, id: i64) -> Result<Room, RoomError> {
    let row: Option<RoomRow> = on_db!(db, c => sqlx::query_as(
        &format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1"),
    )
    .bind(id)
    .fetch_optional(c)
    .await)?;
    let row = row.ok_or(RoomError::NotFound)?;
    let changes: Vec<ChangeRow> = on_db!(db, c => sqlx::query_as(
        "SELECT room_id, at, admit_per_second, paused FROM room_rate_changes WHERE room_id = $1 \
         ORDER BY seq",
    )
    .bind(id)
    .fetch_all(c)
    .await)?;
    row.into_room(changes)
}

/// The rooms not closed, and those closed since `closed_since`, oldest first, with their rate
/// histories: what every instance follows (two queries whatever their number).
pub async fn current(db: &Db, closed_since: DateTime<Utc>) -> Result<Vec<Room>, RoomError> {
    let rows: Vec<RoomRow> = on_db!(db, c => sqlx::query_as(&format!(
        "SELECT {ROOM_COLUMNS} FROM rooms WHERE closed_at IS NULL OR closed_at > $1 ORDER BY id"
    ))
    .bind(closed_since)
    .fetch_all(c)
    .await)?;
    let mut changes: Vec<ChangeRow> = on_db!(db, c => sqlx::query_as(
        "SELECT ch.room_id, ch.at, ch.admit_per_second, ch.paused FROM room_rate_changes ch \
         JOIN rooms r ON r.id = ch.room_id WHERE r.closed_at IS NULL OR r.closed_at > $1 \
         ORDER BY ch.room_id, ch.seq",
    )
    .bind(closed_since)
    .fetch_all(c)
    .await)?;
    let mut rooms = Vec::with_capacity(rows.len());
    for row in rows {
        let split = changes.partition_point(|change| change.room_id <= row.id);
        let mine: Vec<ChangeRow> = changes.drain(..split).collect();
        let mine = mine
            .into_iter()
            .filter(|change| change.room_id == row.id)
            .collect();
        rooms.push(row.into_room(mine)?);
    }
    Ok(rooms)
}

/// Every room, newest first, at most `limit` (the operations command's listing).
pub async fn list(db: &Db, limit: i64) -> Result<Vec<Room>, RoomError> {
    let ids: Vec<i64> = on_db!(db, c => sqlx::query_scalar(
        "SELECT id FROM rooms ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(c)
    .await)?;
    let mut rooms = Vec::with_capacity(ids.len());
    for id in ids {
        rooms.push(find(db, id).await?);
    }
    Ok(rooms)
}

impl RoomRow {
    fn into_room(self, changes: Vec<ChangeRow>) -> Result<Room, RoomError> {
        let row = self;
        let id = row.id;
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
            seed: Seed::from_hex(&row.shuffle_seed).ok_or_else(|| {
                RoomError::Unknown(anyhow::anyhow!("room {id}: a malformed seed"))
            })?,
            closed_reason: row.closed_reason.as_deref().and_then(ClosedReason::parse),
            closed_at: row.closed_at,
            schedule: Schedule::from_changes(row.opens_at, changes),
        })
    }
}
