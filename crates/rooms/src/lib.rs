//! The waiting-room context: a line in front of one sale (a coupon drop or a product), admitted
//! at a set rate (`docs/design.md`, "The waiting room").
//!
//! The arithmetic is the same on every deployment and every instance: [`schedule`] says how
//! many admissions are due at any moment from the room's rate history (admission is a function
//! of time, so instances agree without talking), [`order`] puts the places taken before
//! opening in an order anyone can recompute from the published seed, and [`line`] is one
//! room's line as a process holds it (the embedded deployment's, and the reference the Redis
//! scripts follow). [`store`] keeps the lines (in process, or in Redis for many instances),
//! [`definition`] keeps rooms and their rate history in the database, and [`registry`] is
//! what this instance knows of them.
//!
//! The use cases: [`admin`] (create, change, close), [`join`] (take, read and leave a place),
//! [`guard`] (a guarded request claims and spends an admission), [`follow`] (a place's
//! stream), [`report`] (what the operations command prints), and [`tick`] (each instance's loop: opening, admitting, dropping the abandoned,
//! closing sold-out rooms, and refreshing the streams it holds).

pub mod admin;
mod config;
pub mod definition;
pub mod follow;
pub mod guard;
pub mod join;
pub mod line;
pub mod order;
pub mod place;
pub mod registry;
pub mod report;
pub mod room;
pub mod schedule;
pub mod store;
pub mod tick;

use std::sync::Arc;

use cache::Cache;
use db::Db;

pub use config::RoomConfig;
pub use definition::{ClosedReason, Room};
pub use line::{Line, PlaceStatus};
pub use place::{PlaceKey, PlaceView};
pub use room::{NewRoom, RoomError, RoomStatus, Sale};
pub use schedule::Schedule;

/// What the room needs to know of the sale it stands in front of; the contexts that own the
/// sales answer (the server wires them).
#[async_trait::async_trait]
pub trait Sales: Send + Sync {
    /// Whether `sale` names a coupon or product that exists.
    async fn exists(&self, sale: Sale) -> anyhow::Result<bool>;
    /// Whether `sale` is sold out: no coupon unit left, or no stock left in any option.
    async fn sold_out(&self, sale: Sale) -> anyhow::Result<bool>;
}

/// The rooms context of one process. Cheap to clone.
#[derive(Clone)]
pub struct Rooms(Arc<Inner>);

struct Inner {
    db: Db,
    cache: Cache,
    lines: store::Lines,
    registry: registry::Registry,
    key: PlaceKey,
    config: RoomConfig,
    sales: Arc<dyn Sales>,
    watchers: follow::Watchers,
    paces: tick::Paces,
}

impl Rooms {
    /// The context on `db` and `cache`, signing place ids with `key`.
    pub fn new(
        db: Db,
        cache: Cache,
        key: PlaceKey,
        config: RoomConfig,
        sales: Arc<dyn Sales>,
    ) -> Self {
        Self(Arc::new(Inner {
            lines: store::Lines::on(&cache),
            db,
            cache,
            registry: registry::Registry::default(),
            key,
            config,
            sales,
            watchers: follow::Watchers::default(),
            paces: tick::Paces::default(),
        }))
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    pub fn lines(&self) -> &store::Lines {
        &self.0.lines
    }

    pub fn registry(&self) -> &registry::Registry {
        &self.0.registry
    }

    pub fn config(&self) -> &RoomConfig {
        &self.0.config
    }

    /// The room `id`: this instance's copy while it follows the room, else the database's.
    pub async fn room(&self, id: i64) -> Result<Arc<Room>, RoomError> {
        if let Some(room) = self.0.registry.snapshot().room(id) {
            return Ok(room.clone());
        }
        Ok(Arc::new(definition::find(&self.0.db, id).await?))
    }
}

#[cfg(test)]
mod tests;
