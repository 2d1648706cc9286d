//! Where the lines live: in this process ([`memory`], the embedded default) or in Redis
//! ([`redis`], production, shared by every instance). Both keep the same state per room and
//! answer the same operations; one conformance suite (`crate::tests`) holds them equal, with
//! [`Line`](crate::Line) as the reference.
//!
//! Every operation that makes an admission happen is idempotent across instances: `admit` is
//! told how many admissions are due in all (from the room's schedule) and makes only those not
//! yet made, so instances that tick at once admit each place once.

mod memory;
mod redis;

use cache::Cache;
use chrono::{DateTime, Duration, Utc};

pub use self::memory::MemoryLines;
pub use self::redis::RedisLines;
use crate::{line::Claim, order::Seed, PlaceStatus};

/// A user's latest place in a room, as the line keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceRecord {
    pub user_id: i64,
    /// The user's places in the room are counted from 1.
    pub generation: u32,
    pub status: PlaceStatus,
    pub number: Option<u64>,
    pub admitted_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// How the user's previous place in the room ended.
    pub previous: Option<PlaceStatus>,
}

/// A place and, while it waits, its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub record: PlaceRecord,
    pub position: Option<u64>,
}

/// A line's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    pub waiting: u64,
    /// Admissions not yet spent, expired or given up.
    pub active: u64,
    /// Admissions made since the line began.
    pub admitted: u64,
    /// Places dropped as abandoned since the line began.
    pub dropped: u64,
    /// Waiting places their users took out of the line since it began.
    pub left: u64,
}

impl LineStats {
    pub fn counts(&self) -> Counts {
        Counts {
            admitted: self.admitted,
            gone: self.dropped + self.left,
        }
    }
}

/// A line's running counts: admissions made, and waiting places gone otherwise (left or
/// dropped). Between two reads, a waiting place moves up by the admissions made meanwhile and
/// by at most the places gone meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub admitted: u64,
    pub gone: u64,
}

/// How a join went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A new place (`true`), or the one the user holds.
    Place(Seen, bool),
    /// The line is closed.
    Closed,
}

/// The lines of every room, in this process or in Redis. Cheap to clone.
#[derive(Clone)]
pub enum Lines {
    Memory(MemoryLines),
    Redis(RedisLines),
}

impl Lines {
    /// The lines kept where `cache` keeps its state.
    pub fn on(cache: &Cache) -> Self {
        match cache {
            Cache::Memory(_) => Self::Memory(MemoryLines::default()),
            Cache::Redis(redis) => Self::Redis(RedisLines::new(redis.clone())),
        }
    }

    /// Makes sure room `room` has a line (an empty one if it had none, or it was lost).
    pub async fn prepare(&self, room: i64, seed: Seed) -> anyhow::Result<()> {
        match self {
            Self::Memory(m) => {
                m.prepare(room, seed);
                Ok(())
            }
            Self::Redis(r) => r.prepare(room).await,
        }
    }

    /// `user` joins the line of `room` at `now` (the place they hold if they hold one).
    pub async fn join(
        &self,
        room: i64,
        seed: Seed,
        user: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Joined> {
        match self {
            Self::Memory(m) => Ok(m.join(room, seed, user, now)),
            Self::Redis(r) => r.join(room, user, now).await,
        }
    }

    /// `users`' latest places in `room` (`None` for a user with none), seen at `now` when
    /// `touch`.
    pub async fn places(
        &self,
        room: i64,
        users: &[i64],
        now: DateTime<Utc>,
        touch: bool,
    ) -> anyhow::Result<Vec<Option<Seen>>> {
        let counted = self.places_counted(room, users, now, touch).await?;
        Ok(counted.into_iter().map(|(seen, _)| seen).collect())
    }

    /// [`places`](Self::places), each with the line's counts as it was read.
    pub async fn places_counted(
        &self,
        room: i64,
        users: &[i64],
        now: DateTime<Utc>,
        touch: bool,
    ) -> anyhow::Result<Vec<(Option<Seen>, Counts)>> {
        match self {
            Self::Memory(m) => Ok(m.places(room, users, now, touch)),
            Self::Redis(r) => r.places(room, users, now, touch).await,
        }
    }

    /// `user` leaves `room`'s line (or gives up an unspent admission); false when they held
    /// neither.
    pub async fn leave(&self, room: i64, user: i64) -> anyhow::Result<bool> {
        match self {
            Self::Memory(m) => Ok(m.leave(room, user)),
            Self::Redis(r) => r.leave(room, user).await,
        }
    }

    /// Opens `room`'s line: the places taken before are numbered in `seed`'s order. Once;
    /// false while another instance is opening it.
    pub async fn open(&self, room: i64, seed: Seed) -> anyhow::Result<bool> {
        match self {
            Self::Memory(m) => {
                m.open(room);
                Ok(true)
            }
            Self::Redis(r) => r.open(room, seed).await,
        }
    }

    /// Makes the admissions of `room` due by `now` (`due` in all since opening) that were not
    /// made yet, within `max_active`; each lasts `lasts`. Returns how long each place it
    /// admitted had waited since it joined.
    pub async fn admit(
        &self,
        room: i64,
        due: u64,
        max_active: Option<u64>,
        now: DateTime<Utc>,
        lasts: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        match self {
            Self::Memory(m) => Ok(m.admit(room, due, max_active, now, lasts)),
            Self::Redis(r) => r.admit(room, due, max_active, now, lasts).await,
        }
    }

    /// Reserves `user`'s admission in `room` for one guarded request, for `lease`.
    pub async fn claim(
        &self,
        room: i64,
        user: i64,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Claim> {
        match self {
            Self::Memory(m) => Ok(m.claim(room, user, now, lease)),
            Self::Redis(r) => r.claim(room, user, now, lease).await,
        }
    }

    /// Spends (`accepted`) or frees a claimed admission.
    pub async fn settle(&self, room: i64, user: i64, accepted: bool) -> anyhow::Result<()> {
        match self {
            Self::Memory(m) => {
                m.settle(room, user, accepted);
                Ok(())
            }
            Self::Redis(r) => r.settle(room, user, accepted).await,
        }
    }

    /// Drops the waiting places of `room` not seen since `cutoff`; returns how many.
    pub async fn abandon(&self, room: i64, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        match self {
            Self::Memory(m) => Ok(m.abandon(room, cutoff)),
            Self::Redis(r) => r.abandon(room, cutoff).await,
        }
    }

    /// Closes `room`'s line: nobody joins, every waiting place is `CLOSED`.
    pub async fn close(&self, room: i64) -> anyhow::Result<()> {
        match self {
            Self::Memory(m) => {
                m.close(room);
                Ok(())
            }
            Self::Redis(r) => r.close(room).await,
        }
    }

    /// `room`'s figures (zeros for a line never prepared).
    pub async fn stats(&self, room: i64) -> anyhow::Result<LineStats> {
        match self {
            Self::Memory(m) => Ok(m.stats(room)),
            Self::Redis(r) => r.stats(room).await,
        }
    }
}
