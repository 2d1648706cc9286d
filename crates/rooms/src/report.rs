//! What `stampede rooms list` and `stampede rooms show ID` print, and the rooms on the live
//! operations page: the rooms as an operator reads them, from the database and the line.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::{
    definition::{self, RoomView},
    store::LineStats,
    Room, RoomError, Rooms, Sale,
};

/// How many rooms `list` prints, newest first.
pub const LISTED: i64 = 50;

fn sale(room: &Room) -> String {
    match room.sale() {
        Sale::Coupon(id) => format!("coupon {id}"),
        Sale::Product(id) => format!("product {id}"),
    }
}

/// The line's figures, or `None` when the line lives in the serving process's memory (the
/// embedded default), which this command cannot see.
async fn stats(rooms: &Rooms, room: &Room) -> Result<Option<LineStats>, RoomError> {
    if rooms.0.cache.kind() == "memory" {
        return Ok(None);
    }
    let stats = rooms.lines().stats(room.id).await;
    stats.map(Some).map_err(RoomError::Unavailable)
}

fn figure(stats: Option<LineStats>, pick: fn(&LineStats) -> u64) -> String {
    stats.map_or("-".to_owned(), |stats| pick(&stats).to_string())
}

/// Said under a report whose line figures could not be read.
const IN_PROCESS: &str = "(memory:// keeps each line in the serving process: its figures are \
    at GET /api/rooms/ID)\n";

/// One line a room: id, status, sale, rate, waiting, admitted, name.
pub async fn list(rooms: &Rooms, now: DateTime<Utc>) -> Result<String, RoomError> {
    let mut out = format!(
        "{:>5}  {:<9}  {:<16}  {:>9}  {:>9}  {:>9}  name\n",
        "id", "status", "sale", "rate/s", "waiting", "admitted"
    );
    let mut in_process = false;
    for room in definition::list(rooms.db(), LISTED).await? {
        let stats = stats(rooms, &room).await?;
        in_process |= stats.is_none();
        let view = room.view(stats.unwrap_or_default(), now);
        let status = serde_json::to_value(view.status).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>5}  {:<9}  {:<16}  {:>9}  {:>9}  {:>9}  {}",
            room.id,
            status.as_str().unwrap_or("?"),
            sale(&room),
            view.admit_per_second,
            figure(stats, |s| s.waiting),
            figure(stats, |s| s.admitted),
            room.name
        );
    }
    if in_process {
        out.push_str(IN_PROCESS);
    }
    Ok(out)
}

/// A room in full: its definition, its line's figures and its rate history.
pub async fn show(rooms: &Rooms, id: i64, now: DateTime<Utc>) -> Result<String, RoomError> {
    let room = definition::find(rooms.db(), id).await?;
    let stats = stats(rooms, &room).await?;
    let view = room.view(stats.unwrap_or_default(), now);
    let mut out = String::new();
    let status = serde_json::to_value(view.status).unwrap_or_default();
    let _ = writeln!(
        out,
        "room {} \"{}\" in front of {}",
        room.id,
        room.name,
        sale(&room)
    );
    let _ = writeln!(out, "status      {}", status.as_str().unwrap_or("?"));
    if let (Some(at), Some(reason)) = (room.closed_at, room.closed_reason) {
        let reason = serde_json::to_value(reason).unwrap_or_default();
        let _ = writeln!(out, "closed      {at} ({})", reason.as_str().unwrap_or("?"));
    }
    let _ = writeln!(out, "opens       {}", room.schedule.opens_at());
    let cap = room
        .max_active
        .map_or("none".to_owned(), |cap| cap.to_string());
    let _ = writeln!(
        out,
        "admissions  {} s each, at most {cap} unspent at once",
        room.admission_secs
    );
    let _ = writeln!(
        out,
        "line        {} waiting, {} admitted in all ({} unspent), {} dropped as abandoned",
        figure(stats, |s| s.waiting),
        figure(stats, |s| s.admitted),
        figure(stats, |s| s.active),
        figure(stats, |s| s.dropped)
    );
    let _ = writeln!(out, "due by now  {}", room.schedule.due(now));
    let _ = writeln!(
        out,
        "seed        {}",
        room.published_seed(now)
            .unwrap_or_else(|| "(published at opening)".to_owned())
    );
    let _ = writeln!(out, "rate history:");
    for change in room.schedule.changes() {
        let what = if change.paused {
            "paused".to_owned()
        } else {
            format!("{}/s", change.per_second)
        };
        let _ = writeln!(out, "  from {}  {what}", change.at);
    }
    if stats.is_none() {
        out.push_str(IN_PROCESS);
    }
    Ok(out)
}

/// The rooms this instance follows (not closed, or closed lately) as shown now, with their
/// lines' figures (the live operations page).
pub async fn followed(rooms: &Rooms, now: DateTime<Utc>) -> Result<Vec<RoomView>, RoomError> {
    let snapshot = rooms.registry().snapshot();
    let mut views = Vec::with_capacity(snapshot.rooms.len());
    for room in &snapshot.rooms {
        let stats = rooms.lines().stats(room.id).await;
        views.push(room.view(stats.map_err(RoomError::Unavailable)?, now));
    }
    Ok(views)
}
