//! Test support for the context crates (a dev-dependency only).
//!
//! [`context`] gives a test its own database, cache and db:// bus: SQLite and memory, or —
//! when `STAMPEDE_TEST_DATABASE_URL` and `STAMPEDE_TEST_CACHE_URL` are set — a PostgreSQL
//! schema and Redis key prefix of its own, or the same on a Redis Cluster
//! (`STAMPEDE_TEST_CLUSTER_URL`). [`on_both_adapter_sets!`] declares each test on all three.

use cache::Cache;
use db::{sqlx, Db};
use eventbus::{BusSettings, EventBus, Handler};
use events::Envelope;

/// PostgreSQL, Redis and bus URLs shared by test runs and benchmarks.
#[derive(Debug, Clone)]
pub struct SharedServices {
    pub database: String,
    pub cache: String,
    pub bus: String,
}

impl SharedServices {
    /// From `STAMPEDE_TEST_DATABASE_URL`, `STAMPEDE_TEST_CACHE_URL` and
    /// `STAMPEDE_TEST_BUS_URL`; `None` unless all three are set.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok();
        Some(Self {
            database: var("STAMPEDE_TEST_DATABASE_URL")?,
            cache: var("STAMPEDE_TEST_CACHE_URL")?,
            bus: var("STAMPEDE_TEST_BUS_URL")?,
        })
    }
}

/// One test's adapters, migrated.
pub struct Context {
    pub db: Db,
    pub cache: Cache,
    pub bus: EventBus,
    _dir: tempfile::TempDir,
}

/// Which adapters a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapters {
    /// SQLite and the in-process cache.
    Embedded,
    /// PostgreSQL and one Redis node.
    Production,
    /// PostgreSQL and a Redis Cluster.
    Cluster,
}

/// The adapters named by `adapters`; `None` (the test is skipped) when PostgreSQL and Redis
/// are asked for and not configured.
pub async fn context(adapters: Adapters) -> Option<Context> {
    let dir = tempfile::tempdir().unwrap();
    let cache_variable = match adapters {
        Adapters::Embedded => None,
        Adapters::Production => Some("STAMPEDE_TEST_CACHE_URL"),
        Adapters::Cluster => Some("STAMPEDE_TEST_CLUSTER_URL"),
    };
    let (db, cache) = if let Some(cache_variable) = cache_variable {
        let (Ok(db_url), Ok(cache_url)) = (
            std::env::var("STAMPEDE_TEST_DATABASE_URL"),
            std::env::var(cache_variable),
        ) else {
            eprintln!("skipped: STAMPEDE_TEST_DATABASE_URL / {cache_variable} not set");
            return None;
        };
        // `t_` schemas are what .ci/run drops before a run.
        let namespace = format!("t_{}", uuid::Uuid::now_v7().simple());
        let db = Db::connect(&db_url, Some(&namespace)).await.unwrap();
        let cache = Cache::connect(&cache_url, &format!("{namespace}:"))
            .await
            .unwrap();
        (db, cache)
    } else {
        let url = format!("sqlite://{}/test.db", dir.path().display());
        let db = Db::connect(&url, None).await.unwrap();
        (db, Cache::connect("memory://", "").await.unwrap())
    };
    db.migrate().await.unwrap();
    let bus = EventBus::connect("db://", db.clone(), BusSettings::default())
        .await
        .unwrap();
    Some(Context {
        db,
        cache,
        bus,
        _dir: dir,
    })
}

/// Runs `event` through `handler` in a transaction that commits; returns the events the
/// handler wrote to the outbox in reply.
pub async fn handle(db: &Db, handler: &dyn Handler, event: Envelope) -> Vec<Envelope> {
    let mut tx = db.begin().await.unwrap();
    handler.handle(&mut tx, &event).await.unwrap();
    tx.commit().await.unwrap();
    outbox(db, &event.key)
        .await
        .into_iter()
        .filter(|reply| reply.causation_id == Some(event.id))
        .collect()
}

/// The events in the outbox with `key`, oldest first.
pub async fn outbox(db: &Db, key: &str) -> Vec<Envelope> {
    let rows: Vec<sqlx::types::Json<Envelope>> = db::on_db!(db, c => sqlx::query_scalar(
        "SELECT envelope FROM outbox WHERE event_key = $1 ORDER BY seq",
    )
    .bind(key)
    .fetch_all(c)
    .await)
    .unwrap();
    rows.into_iter().map(|row| row.0).collect()
}

/// Declares each test on the embedded adapters, on PostgreSQL + Redis and on PostgreSQL + a
/// Redis Cluster (the last two skipped when not configured). `$fixture` is an
/// `async fn(Adapters) -> Option<F>` in the calling module; the tests take an `F`.
#[macro_export]
macro_rules! on_both_adapter_sets {
    ($fixture:ident; $($test:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::$fixture($crate::Adapters::Embedded).await.unwrap()).await
            })*
        }
        mod production {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(fixture) = super::$fixture($crate::Adapters::Production).await {
                    super::$test(fixture).await
                }
            })*
        }
        mod cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(fixture) = super::$fixture($crate::Adapters::Cluster).await {
                    super::$test(fixture).await
                }
            })*
        }
    };
}
