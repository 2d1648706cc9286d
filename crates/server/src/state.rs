//! What every request handler and consumer of this process shares.

use std::sync::Arc;

use cache::Cache;
use db::Db;
use eventbus::EventBus;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    http::{auth::Tokens, limits::Limits},
};

/// Handles to the adapters picked by the configuration; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub cache: Cache,
    pub bus: EventBus,
    pub metrics: PrometheusHandle,
    pub tokens: Arc<Tokens>,
    pub coupons: coupons::Coupons,
    pub catalog: catalog::Catalog,
    pub orders: orders::Orders,
    pub ranking: ranking::Ranking,
    /// Password hashing, bounded (sign-up and login).
    pub hashing: points::users::Hashing,
    /// The process's request, stream and rate limits.
    pub limits: Arc<Limits>,
    /// Cancelled when the server begins to shut down: open streams end.
    pub shutdown: CancellationToken,
}
