//! What every request handler and consumer of this process shares.

use std::sync::Arc;

use cache::Cache;
use db::Db;
use eventbus::EventBus;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{config::Settings, http::auth::Tokens};

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
}
