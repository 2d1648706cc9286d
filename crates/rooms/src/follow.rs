//! A place's stream: the place at once, then whenever its status or position changes (a
//! position at most once a second), ending when it stops waiting. Streams do not ask the line
//! for their place: each instance's tick reads the places its streams follow, once for all of
//! them, and hands each stream its own ([`Watchers`]); the stream only formats it.
//!
//! Between two full reads a waiting place's position is worked out, not read: it moves up by
//! the admissions made since its last read (the line's [`Counts`]), and only a place that may
//! have reached the front (its position no more than the admissions and departures since) is
//! read again. A departure ahead shows at the next full read.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use chrono::Utc;
use futures::Stream;
use tokio::{sync::watch, time::Instant};

use crate::{
    join::{self, view},
    place::{PlaceRef, PlaceView},
    store::{Counts, Seen},
    PlaceStatus, Room, RoomError, Rooms,
};

/// A waiting place's position is sent at most this often.
pub const POSITION_EVERY: Duration = Duration::from_secs(1);

/// The places this instance's streams follow: per room, per user, the latest the tick read.
#[derive(Default)]
pub struct Watchers {
    rooms: Mutex<HashMap<i64, HashMap<i64, Followed>>>,
}

/// A followed place: its streams' sender, and what its last read said.
struct Followed {
    sender: watch::Sender<Seen>,
    /// Its position and the line's counts at its last read; `None` before its first read, or
    /// when that read gave no position (not numbered yet, or no longer waiting).
    read: Option<(u64, Counts)>,
    unread: bool,
}

impl Watchers {
    fn subscribe(&self, room: i64, user: i64, current: Seen) -> watch::Receiver<Seen> {
        let mut rooms = self.rooms.lock().expect("watchers lock");
        let users = rooms.entry(room).or_default();
        match users.get(&user) {
            Some(followed) => followed.sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(current);
                let followed = Followed {
                    sender,
                    read: None,
                    unread: true,
                };
                users.insert(user, followed);
                receiver
            }
        }
    }

    /// The users followed in `room` (forgetting those nobody follows any more).
    pub(crate) fn followed(&self, room: i64) -> Vec<i64> {
        let mut rooms = self.rooms.lock().expect("watchers lock");
        let Some(users) = rooms.get_mut(&room) else {
            return Vec::new();
        };
        users.retain(|_, followed| followed.sender.receiver_count() > 0);
        let followed = users.keys().copied().collect();
        if users.is_empty() {
            rooms.remove(&room);
        }
        followed
    }

    /// Whether any stream follows a place of `room`.
    pub(crate) fn follows(&self, room: i64) -> bool {
        self.rooms
            .lock()
            .expect("watchers lock")
            .contains_key(&room)
    }

    /// Moves each waiting place of `room` up by the admissions counted since its last read,
    /// and returns the places to read again: those never read, and those that may have reached
    /// the front.
    pub(crate) fn advance(&self, room: i64, now: Counts) -> Vec<i64> {
        let mut rooms = self.rooms.lock().expect("watchers lock");
        let Some(users) = rooms.get_mut(&room) else {
            return Vec::new();
        };
        users.retain(|_, followed| followed.sender.receiver_count() > 0);
        if users.is_empty() {
            rooms.remove(&room);
            return Vec::new();
        }
        let mut again = Vec::new();
        for (&user, followed) in users.iter() {
            if followed.unread {
                again.push(user);
                continue;
            }
            let Some((position, then)) = followed.read else {
                continue;
            };
            let admitted = now.admitted.saturating_sub(then.admitted);
            let gone = now.gone.saturating_sub(then.gone);
            if position <= admitted + gone {
                again.push(user);
                continue;
            }
            let moved = Some(position - admitted);
            followed.sender.send_if_modified(|current| {
                let changed = current.position.is_some() && current.position != moved;
                if changed {
                    current.position = moved;
                }
                changed
            });
        }
        again
    }

    /// Hands each stream of `room` its place as just read, with the line's counts then.
    pub(crate) fn deliver(&self, room: i64, places: Vec<(i64, Seen, Counts)>) {
        let mut rooms = self.rooms.lock().expect("watchers lock");
        let Some(users) = rooms.get_mut(&room) else {
            return;
        };
        for (user, seen, counts) in places {
            if let Some(followed) = users.get_mut(&user) {
                followed.unread = false;
                followed.read = seen.position.map(|position| (position, counts));
                followed.sender.send_if_modified(|current| {
                    let changed = *current != seen;
                    *current = seen;
                    changed
                });
            }
        }
    }

    /// Ends the streams of rooms no longer followed.
    pub(crate) fn keep_only(&self, rooms_followed: &HashSet<i64>) {
        let mut rooms = self.rooms.lock().expect("watchers lock");
        rooms.retain(|room, _| rooms_followed.contains(room));
    }
}

/// The stream of the place `place_id`; `last_event_id` (a reconnecting client's) skips the
/// state it already saw. Fails when the id names no place.
pub async fn follow(
    rooms: &Rooms,
    place_id: &str,
    last_event_id: Option<String>,
) -> Result<impl Stream<Item = PlaceView> + Send + 'static, RoomError> {
    let (place, seen, first) = join::look_up(rooms, place_id, Utc::now()).await?;
    let receiver = (first.status == PlaceStatus::Waiting)
        .then(|| rooms.0.watchers.subscribe(place.room, place.user, seen));
    let state = Following {
        rooms: rooms.clone(),
        place,
        first: Some(first),
        receiver,
        last: last_event_id,
        position_sent: None,
        done: false,
    };
    Ok(futures::stream::unfold(state, Following::next))
}

struct Following {
    rooms: Rooms,
    place: PlaceRef,
    first: Option<PlaceView>,
    receiver: Option<watch::Receiver<Seen>>,
    /// The event id sent last (or the client's `Last-Event-ID`).
    last: Option<String>,
    position_sent: Option<Instant>,
    done: bool,
}

impl Following {
    async fn next(mut self) -> Option<(PlaceView, Self)> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            if self.last.as_deref() != Some(&first.event_id()) {
                return Some(self.sent(first));
            }
            if first.status != PlaceStatus::Waiting {
                return None;
            }
        }
        loop {
            let receiver = self.receiver.as_mut()?;
            receiver.changed().await.ok()?;
            let mut view = self.view()?;
            if self.last.as_deref() == Some(&view.event_id()) {
                continue;
            }
            // A new position waits for its second; a new status (admitted, closed) does not.
            if let Some(sent) = self.position_sent {
                let next = sent + POSITION_EVERY;
                while view.status == PlaceStatus::Waiting && next > Instant::now() {
                    let receiver = self.receiver.as_mut()?;
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => {}
                        changed = receiver.changed() => changed.ok()?,
                    }
                    view = self.view()?;
                }
                if self.last.as_deref() == Some(&view.event_id()) {
                    continue;
                }
            }
            return Some(self.sent(view));
        }
    }

    /// The place as the latest read says.
    fn view(&mut self) -> Option<PlaceView> {
        let seen = self.receiver.as_mut()?.borrow_and_update().clone();
        let snapshot = self.rooms.registry().snapshot();
        let room: &Room = snapshot.room(self.place.room)?;
        view(&self.rooms, room, &seen, self.place.generation, Utc::now()).ok()
    }

    fn sent(mut self, view: PlaceView) -> (PlaceView, Self) {
        self.last = Some(view.event_id());
        if view.status == PlaceStatus::Waiting {
            self.position_sent = Some(Instant::now());
        } else {
            self.done = true;
        }
        (view, self)
    }
}

impl Rooms {
    pub(crate) fn watchers(&self) -> &Watchers {
        &self.0.watchers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PlaceRecord;

    fn waiting(user: i64, position: u64) -> Seen {
        Seen {
            record: PlaceRecord {
                user_id: user,
                generation: 1,
                status: PlaceStatus::Waiting,
                number: Some(position),
                admitted_at: None,
                expires_at: None,
                previous: None,
            },
            position: Some(position),
        }
    }

    #[test]
    fn positions_move_up_by_the_admissions_and_only_places_that_may_be_in_front_are_read() {
        let watchers = Watchers::default();
        let places = [(1, 10), (2, 40), (3, 100)];
        let receivers = places.map(|(user, at)| watchers.subscribe(7, user, waiting(user, at)));
        let mut again = watchers.advance(7, Counts::default());
        again.sort_unstable();
        assert_eq!(again, [1, 2, 3], "never read: read");
        let then = Counts {
            admitted: 100,
            gone: 5,
        };
        let read = places.map(|(user, at)| (user, waiting(user, at), then));
        watchers.deliver(7, read.to_vec());
        assert!(watchers.advance(7, then).is_empty());
        // 30 admitted and 2 gone since: the place at 10 may have been admitted (10 <= 32); the
        // others moved up by the 30 admissions (the 2 gone may have been behind them).
        let now = Counts {
            admitted: 130,
            gone: 7,
        };
        assert_eq!(watchers.advance(7, now), [1]);
        assert_eq!(receivers[0].borrow().position, Some(10), "until it is read");
        assert_eq!(receivers[1].borrow().position, Some(10));
        assert_eq!(receivers[2].borrow().position, Some(70));
        drop(receivers);
        assert!(watchers.advance(7, now).is_empty(), "nobody follows");
    }
}
