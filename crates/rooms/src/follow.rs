//! A place's stream: the place at once, then whenever its status or position changes (a
//! position at most once a second), ending when it stops waiting. Streams do not ask the line
//! for their place: each instance's tick reads the places its streams follow, once for all of
//! them, and hands each stream its own ([`Watchers`]); the stream only formats it.

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
    store::Seen,
    PlaceStatus, Room, RoomError, Rooms,
};

/// A waiting place's position is sent at most this often.
pub const POSITION_EVERY: Duration = Duration::from_secs(1);

/// The places this instance's streams follow: per room, per user, the latest the tick read.
#[derive(Default)]
pub struct Watchers {
    rooms: Mutex<HashMap<i64, HashMap<i64, watch::Sender<Seen>>>>,
}

impl Watchers {
    fn subscribe(&self, room: i64, user: i64, current: Seen) -> watch::Receiver<Seen> {
        let mut rooms = self.rooms.lock().expect("watchers lock");
        let users = rooms.entry(room).or_default();
        match users.get(&user) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(current);
                users.insert(user, sender);
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
        users.retain(|_, sender| sender.receiver_count() > 0);
        let followed = users.keys().copied().collect();
        if users.is_empty() {
            rooms.remove(&room);
        }
        followed
    }

    /// Hands each stream of `room` its place as just read.
    pub(crate) fn deliver(&self, room: i64, places: Vec<(i64, Seen)>) {
        let rooms = self.rooms.lock().expect("watchers lock");
        let Some(users) = rooms.get(&room) else {
            return;
        };
        for (user, seen) in places {
            if let Some(sender) = users.get(&user) {
                sender.send_if_modified(|current| {
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
