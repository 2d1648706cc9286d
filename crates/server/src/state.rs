//! What every request handler and consumer of this process shares.

use std::sync::Arc;

use cache::Cache;
use db::Db;
use eventbus::EventBus;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    limits::{Limits, Throttle},
    tokens::Tokens,
};

/// Handles to the adapters picked by the configuration. Cloned for every request (axum hands
/// each handler and middleware its own copy), so a clone must be one reference count, not one
/// per handle: keep new handles inside [`Handles`] (ARCHITECTURE.md, "Per-request cost").
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl AppState {
    pub fn new(handles: Handles) -> Self {
        Self(Arc::new(handles))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Handles {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub cache: Cache,
    pub bus: EventBus,
    pub metrics: PrometheusHandle,
    /// `/metrics` reads the database's and the bus's figures through it, at most once a second.
    pub metrics_refresh: Throttle,
    pub tokens: Arc<Tokens>,
    pub coupons: coupons::Coupons,
    pub catalog: catalog::Catalog,
    pub orders: orders::Orders,
    pub ranking: ranking::Ranking,
    pub rooms: rooms::Rooms,
    /// Password hashing, bounded (sign-up and login).
    pub hashing: points::users::Hashing,
    /// The process's request, stream and rate limits.
    pub limits: Arc<Limits>,
    /// Cancelled when the server begins to shut down: open streams end.
    pub shutdown: CancellationToken,
}
