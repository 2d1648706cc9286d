//! Liveness and readiness.

use std::time::Duration;

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, AppJson, Problem};
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `UP`.
    pub status: &'static str,
    /// Each dependency checked (`database`, `cache`, `bus`) and its state, and `consumers`:
    /// `UP`; `JOINING: ` and the Kafka consumer groups still joining (not ready meanwhile, for
    /// at most 30 s after each consumer starts); or `STALLED: ` and the consumer groups with
    /// waiting events that handle none.
    #[schema(value_type = Object)]
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// The process is running.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process runs", body = Health)))]
pub async fn live() -> AppJson<Health> {
    AppJson(Health {
        status: "UP",
        checks: Default::default(),
    })
}

/// The database, the cache and the event bus all answer.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, description = "Ready", body = Health),
    (status = 503, description = "A dependency is down; `detail` names it", body = Problem,
        content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<AppJson<Health>, ApiError> {
    let (database, cache, bus) = tokio::join!(
        check(async { Ok(state.db.ping().await?) }),
        check(state.cache.ping()),
        check(state.bus.ping()),
    );
    let mut checks = serde_json::Map::new();
    let mut failing = Vec::new();
    for (name, result) in [("database", database), ("cache", cache), ("bus", bus)] {
        let value = match result {
            Ok(()) => "UP".to_owned(),
            Err(error) => {
                tracing::warn!(
                    check = name,
                    error = format!("{error:#}"),
                    "readiness check failed"
                );
                failing.push(name);
                "DOWN".to_owned()
            }
        };
        checks.insert(name.to_owned(), value.into());
    }
    // A stalled consumer is reported, not failed on: the process restarts it itself, and the
    // API it serves still works meanwhile. Consumers still joining their groups fail the check
    // (for at most a join's grace): events for them would wait until they have joined.
    let (stalled, joining) = (state.bus.stalled(), state.bus.joining());
    let consumers = if !joining.is_empty() {
        failing.push("consumers");
        format!("JOINING: {}", joining.join(", "))
    } else if !stalled.is_empty() {
        format!("STALLED: {}", stalled.join(", "))
    } else {
        "UP".to_owned()
    };
    checks.insert("consumers".to_owned(), consumers.into());
    if failing.is_empty() {
        Ok(AppJson(Health {
            status: "UP",
            checks,
        }))
    } else {
        Err(
            // An answer about the process, not a refused request: not counted among the
            // refusals (a dependency that is down is logged above; consumers still joining
            // are expected for a few seconds after each start).
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                format!("not ready: {} not up", failing.join(", ")),
            )
            .retry_after(1)
            .with_extra("checks", checks.into()),
        )
    }
}

async fn check(probe: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(CHECK_TIMEOUT, probe)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CHECK_TIMEOUT:?}"))?
}
