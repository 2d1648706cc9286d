//! The lines in this process's memory (embedded default): one [`Line`] per room under a lock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Duration, Utc};

use super::{Counts, Joined, LineStats, PlaceRecord, Seen};
use crate::{
    line::{Claim, Line, PlaceIndex},
    order::Seed,
};

/// Every room's line in this process. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryLines {
    rooms: Arc<Mutex<HashMap<i64, Line>>>,
}

impl MemoryLines {
    fn with<T>(&self, room: i64, missing: T, act: impl FnOnce(&mut Line) -> T) -> T {
        let mut rooms = self.rooms.lock().expect("lines lock");
        match rooms.get_mut(&room) {
            Some(line) => act(line),
            None => missing,
        }
    }

    pub(super) fn prepare(&self, room: i64, seed: Seed) {
        let mut rooms = self.rooms.lock().expect("lines lock");
        rooms.entry(room).or_insert_with(|| Line::new(seed));
    }

    /// Joins the line of `room`, made now (shuffled by `seed`) if it had none.
    pub(super) fn join(&self, room: i64, seed: Seed, user: i64, now: DateTime<Utc>) -> Joined {
        let mut rooms = self.rooms.lock().expect("lines lock");
        let line = rooms.entry(room).or_insert_with(|| Line::new(seed));
        match line.join(user, now) {
            Some((index, new)) => Joined::Place(seen(line, index), new),
            None => Joined::Closed,
        }
    }

    pub(super) fn places(
        &self,
        room: i64,
        users: &[i64],
        now: DateTime<Utc>,
        touch: bool,
    ) -> Vec<(Option<Seen>, Counts)> {
        self.with(room, vec![(None, Counts::default()); users.len()], |line| {
            let counts = Counts {
                admitted: line.admitted_total(),
                gone: line.dropped_total() + line.left_total(),
            };
            users
                .iter()
                .map(|&user| {
                    if touch {
                        line.touch(user, now);
                    }
                    (line.place_of(user).map(|index| seen(line, index)), counts)
                })
                .collect()
        })
    }

    pub(super) fn leave(&self, room: i64, user: i64) -> bool {
        self.with(room, false, |line| line.leave(user))
    }

    pub(super) fn open(&self, room: i64) {
        self.with(room, (), Line::open);
    }

    pub(super) fn admit(
        &self,
        room: i64,
        due: u64,
        max_active: Option<u64>,
        now: DateTime<Utc>,
        lasts: Duration,
    ) -> Vec<Duration> {
        self.with(room, Vec::new(), |line| {
            let admitted = line.admit(due, max_active, now, lasts);
            admitted
                .into_iter()
                .map(|index| now - line.place(index).joined_at)
                .collect()
        })
    }

    pub(super) fn claim(&self, room: i64, user: i64, now: DateTime<Utc>, lease: Duration) -> Claim {
        self.with(room, Claim::Required, |line| line.claim(user, now, lease))
    }

    pub(super) fn settle(&self, room: i64, user: i64, accepted: bool) {
        self.with(room, (), |line| line.settle(user, accepted));
    }

    pub(super) fn abandon(&self, room: i64, cutoff: DateTime<Utc>) -> u64 {
        self.with(room, 0, |line| line.abandon(cutoff))
    }

    pub(super) fn close(&self, room: i64) {
        self.with(room, (), |line| {
            line.close();
        });
    }

    pub(super) fn stats(&self, room: i64) -> LineStats {
        self.with(room, LineStats::default(), |line| LineStats {
            waiting: line.waiting(),
            active: line.active(),
            admitted: line.admitted_total(),
            dropped: line.dropped_total(),
            left: line.left_total(),
        })
    }
}

/// The place `index` of `line` as the store reports it.
fn seen(line: &Line, index: PlaceIndex) -> Seen {
    let place = line.place(index);
    Seen {
        record: PlaceRecord {
            user_id: place.user_id,
            generation: place.generation,
            status: place.status,
            number: place.number,
            admitted_at: place.admitted_at,
            expires_at: place.expires_at,
            previous: place.previous.map(|earlier| line.place(earlier).status),
        },
        position: line.position(index),
    }
}
