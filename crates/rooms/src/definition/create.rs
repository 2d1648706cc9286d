//! Creating a room: one room at a time per sale (a second gets `Exists` until the first closes).

use chrono::{DateTime, Utc};
use db::{exec, on_tx, sqlx, Db};

use super::{find, Room};
use crate::{
    order::Seed,
    room::{NewRoom, RoomError},
};

/// Stores `new` with a fresh seed and its opening rate, as of `now`.
pub async fn create(db: &Db, new: &NewRoom, now: DateTime<Utc>) -> Result<Room, RoomError> {
    new.validate()?;
    let seed = Seed::random();
    let mut tx = db.begin().await?;
    let inserted: Result<i64, sqlx::Error> = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO rooms (name, coupon_id, product_id, opens_at, max_active, admission_secs, \
         shuffle_seed, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(new.name.trim())
    .bind(new.coupon_id)
    .bind(new.product_id)
    .bind(new.opens_at)
    .bind(new.max_active)
    .bind(new.admission_secs())
    .bind(seed.to_hex())
    .bind(now)
    .fetch_one(c)
    .await);
    let id = match inserted {
        Err(error) if db::is_unique_violation(&error) => return Err(RoomError::Exists),
        other => other?,
    };
    exec!(
        tx,
        "INSERT INTO room_rate_changes (room_id, seq, at, admit_per_second, paused) \
         VALUES ($1, 0, $2, $3, $4)",
        id,
        new.opens_at,
        new.admit_per_second,
        false
    )?;
    tx.commit().await?;
    find(db, id).await
}
