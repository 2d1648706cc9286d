//! The rooms this instance follows, read from the database at most a second apart (at once
//! when an instance announces a change): the guard finds a sale's room here without a query,
//! and the tick admits, closes and refreshes streams from it.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use chrono::{DateTime, Duration, Utc};
use db::Db;

use crate::{definition, Room, RoomError, Sale};

/// A closed room is still followed this long, so that every instance closes its line and its
/// streams.
pub const FOLLOW_CLOSED: Duration = Duration::minutes(10);

/// The rooms at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub rooms: Vec<Arc<Room>>,
    by_sale: HashMap<Sale, Arc<Room>>,
}

impl Snapshot {
    fn new(rooms: Vec<Room>) -> Self {
        let rooms: Vec<Arc<Room>> = rooms.into_iter().map(Arc::new).collect();
        let by_sale = rooms
            .iter()
            .filter(|room| room.closed_at.is_none())
            .map(|room| (room.sale(), room.clone()))
            .collect();
        Self { rooms, by_sale }
    }

    /// The room guarding `sale`, if one is not closed.
    pub fn guarding(&self, sale: Sale) -> Option<&Arc<Room>> {
        self.by_sale.get(&sale)
    }

    pub fn room(&self, id: i64) -> Option<&Arc<Room>> {
        self.rooms.iter().find(|room| room.id == id)
    }
}

/// The latest snapshot. Cheap to read from any task.
#[derive(Default)]
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("registry lock").clone()
    }

    /// Reads the rooms again as of `now`.
    pub async fn refresh(&self, db: &Db, now: DateTime<Utc>) -> Result<Arc<Snapshot>, RoomError> {
        let rooms = definition::current(db, now - FOLLOW_CLOSED).await?;
        let snapshot = Arc::new(Snapshot::new(rooms));
        *self.current.write().expect("registry lock") = snapshot.clone();
        Ok(snapshot)
    }
}
