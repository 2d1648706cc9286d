//! SQL plumbing shared by every context, for both deployments.
//!
//! [`Db`] is a SQLite (embedded default) or PostgreSQL (production) database; [`Tx`] is a write
//! transaction on either. Queries are written once with `$1`-style placeholders, which both
//! databases accept, and run through [`on_db!`] / [`on_tx!`], which expand the query for each
//! backend so the compiler checks the binds and row types against both drivers.

use std::{
    future::Future,
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::future::BoxFuture;

use anyhow::Context as _;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, Postgres, Sqlite, SqlitePool, Transaction,
};
use tokio::sync::Notify;

pub use sqlx;

pub mod text;

/// Which SQL dialect a [`Db`] speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An embedded SQLite database: readers share a pool, writers are serialized through a
/// one-connection pool so they queue in the pool instead of spinning on SQLite's busy lock.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

/// A database handle; cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// Runs `$body` with `$conn` bound to a pool of whichever backend `$db` is (readers on SQLite).
#[macro_export]
macro_rules! on_db {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite(sqlite) => {
                let $conn = &sqlite.read;
                $body
            }
            $crate::Db::Postgres(pool) => {
                let $conn = pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the connection of the transaction `$tx` (a `&mut Tx`).
/// Use `&mut *$conn` to run several statements.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match &mut $tx.inner {
            $crate::TxInner::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::TxInner::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

/// Executes `$sql` with `$bind`s in the transaction `$tx`; evaluates to the number of rows
/// affected (`sqlx::Result<u64>`).
#[macro_export]
macro_rules! exec {
    ($tx:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        $crate::on_tx!($tx, c => $crate::sqlx::query($sql)$(.bind($bind))*.execute(c).await.map(|r| r.rows_affected()))
    };
}

/// The backend transaction inside a [`Tx`].
pub enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// How long [`Tx::commit`] waits for its hooks before leaving them to finish on their own.
pub const HOOK_WAIT: Duration = Duration::from_millis(250);

/// Write transactions this process has committed, and has open now.
static COMMITTED: AtomicU64 = AtomicU64::new(0);
static OPEN: AtomicU64 = AtomicU64::new(0);

/// What this process's writers are doing: how a caller queued behind them tells a database that
/// is busy (writers committing, or one at work) from one that is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// Write transactions committed so far.
    pub committed: u64,
    /// Write transactions open now.
    pub open: u64,
}

/// This process's write activity, on whichever database.
pub fn activity() -> Activity {
    Activity {
        committed: COMMITTED.load(Ordering::Relaxed),
        open: OPEN.load(Ordering::Relaxed),
    }
}

/// Counts a write transaction as open for as long as it lives, and records how long it held
/// its connection (`stampede_db_write_hold_seconds`; on SQLite, the one writer).
struct Open {
    since: std::time::Instant,
}

impl Open {
    fn new() -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Self {
            since: std::time::Instant::now(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        let held = self.since.elapsed();
        metrics::histogram!("stampede_db_write_hold_seconds").record(held.as_secs_f64());
        if held > SLOW_HOLD {
            tracing::debug!(
                held_ms = held.as_millis() as u64,
                "a write transaction held its connection long"
            );
        }
    }
}

/// A write transaction held longer than this is logged (at debug, with the spans it ran in).
const SLOW_HOLD: Duration = Duration::from_millis(100);

/// A write transaction. Work registered with [`Tx::after_commit`] or [`Tx::on_commit`] runs
/// only once the commit has succeeded (this is how the outbox wakes its relay without a fixed
/// polling delay, how results reach their listeners only once they are stored, and how caches
/// drop what the transaction changed).
pub struct Tx {
    pub inner: TxInner,
    after_commit: Vec<Arc<Notify>>,
    on_commit: Vec<BoxFuture<'static, ()>>,
    _open: Open,
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Wakes `notify` after a successful commit (once, however often it is registered).
    pub fn after_commit(&mut self, notify: &Arc<Notify>) {
        if !self.after_commit.iter().any(|n| Arc::ptr_eq(n, notify)) {
            self.after_commit.push(notify.clone());
        }
    }

    /// Runs `hook` after a successful commit. [`Self::commit`] waits for the hooks (they run
    /// concurrently) at most [`HOOK_WAIT`], so the caller normally sees their effects; hooks
    /// slower than that (a cache that stalls) finish in the background instead of holding the
    /// commit. Register it once the statements it reports on have succeeded; it should handle
    /// its own errors, and readers must not depend on it alone (a hook is a wake-up or a cache
    /// invalidation, the stored state is the truth).
    pub fn on_commit(&mut self, hook: impl Future<Output = ()> + Send + 'static) {
        self.on_commit.push(Box::pin(hook));
    }

    /// A mark for [`Self::discard_hooks_since`]: take it when setting a savepoint.
    pub fn hooks_mark(&self) -> usize {
        self.on_commit.len()
    }

    /// Forgets the [`Self::on_commit`] hooks registered since `mark` (after rolling back to the
    /// savepoint the mark was taken at, their work is gone).
    pub fn discard_hooks_since(&mut self, mark: usize) {
        self.on_commit.truncate(mark);
    }

    pub async fn commit(self) -> sqlx::Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        COMMITTED.fetch_add(1, Ordering::Relaxed);
        for notify in self.after_commit {
            notify.notify_one();
        }
        if !self.on_commit.is_empty() {
            let hooks = tokio::spawn(futures::future::join_all(self.on_commit));
            if tokio::time::timeout(HOOK_WAIT, hooks).await.is_err() {
                tracing::warn!("commit hooks are slow; they finish in the background");
            }
        }
        Ok(())
    }

    pub async fn rollback(self) -> sqlx::Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await,
            TxInner::Postgres(t) => t.rollback().await,
        }
    }

    /// Runs one statement without binds (savepoints and other control statements).
    pub async fn execute_raw(&mut self, sql: &str) -> sqlx::Result<()> {
        exec!(self, sql).map(|_| ())
    }
}

/// A pooled connection returned within this long is handed out again without a ping: one that
/// just worked almost surely still does, and the ping would be one more round trip on every
/// statement outside a transaction and every transaction (a broken one fails its statement,
/// which the pool then drops). Longer idle, it is pinged first and replaced if it is gone.
const TRUSTED_IDLE: Duration = Duration::from_secs(1);

async fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> sqlx::Result<bool> {
    Ok(meta.idle_for < TRUSTED_IDLE || conn.ping().await.is_ok())
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`). On PostgreSQL, `schema` (created
    /// if missing) becomes the search path, which is how tests and tenants get their own tables.
    pub async fn connect(url: &str, schema: Option<&str>) -> anyhow::Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            Self::connect_sqlite(path).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url, schema).await
        } else {
            anyhow::bail!("unsupported database URL scheme (expected sqlite:// or postgres://)")
        }
    }

    async fn connect_sqlite(path: &str) -> anyhow::Result<Self> {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the data directory {}", dir.display()))?;
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening SQLite database {path}"))?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("opening SQLite database {path}"))?;
        Ok(Db::Sqlite(SqliteDb { read, write }))
    }

    async fn connect_postgres(url: &str, schema: Option<&str>) -> anyhow::Result<Self> {
        let mut options = PgConnectOptions::from_str(url).context("parsing the PostgreSQL URL")?;
        if let Some(schema) = schema {
            anyhow::ensure!(
                schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "schema names are letters, digits and underscores"
            );
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .context("connecting to PostgreSQL")?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&admin)
                .await
                .context("creating the database schema")?;
            admin.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Db::Postgres(pool))
    }

    /// Connections open and idle in the pool that writes (the one requests queue on).
    pub fn pool_use(&self) -> (usize, usize) {
        match self {
            Db::Sqlite(db) => (db.write.size() as usize, db.write.num_idle()),
            Db::Postgres(pool) => (pool.size() as usize, pool.num_idle()),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite, so writers never deadlock on
    /// a lock upgrade).
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        let asked = std::time::Instant::now();
        let inner = match self {
            Db::Sqlite(db) => TxInner::Sqlite(db.write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
        };
        metrics::histogram!("stampede_db_write_wait_seconds").record(asked.elapsed().as_secs_f64());
        Ok(Tx {
            inner,
            after_commit: Vec::new(),
            on_commit: Vec::new(),
            _open: Open::new(),
        })
    }

    /// Applies the migrations of every context; idempotent.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(db) => sqlx::migrate!("./migrations/sqlite").run(&db.write).await?,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// One round trip to the database, for readiness checks.
    pub async fn ping(&self) -> sqlx::Result<()> {
        on_db!(self, c => sqlx::query("SELECT 1").execute(c).await.map(|_| ()))
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(db) => {
                db.read.close().await;
                db.write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// `ids` as the inside of a SQL `IN (…)`: integers only, so nothing needs escaping, and one
/// query text serves both databases whatever the number of ids.
pub fn id_list(ids: impl IntoIterator<Item = i64>) -> String {
    ids.into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// True when `err` is a unique-constraint violation; adapters turn it into a domain error
/// (for example `AlreadyIssued`).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Whether `err` says the database could not be reached or could not finish in time, rather
/// than that the statement is wrong: a pool that ran dry or closed, a broken connection, a
/// server shutting down or refusing connections, a deadlock or serialization failure, a busy
/// SQLite file. Retrying later may succeed.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            let code = code.as_ref();
            if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite: BUSY (5) and LOCKED (6), with extended codes.
                return code
                    .parse::<i32>()
                    .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6));
            }
            // PostgreSQL (SQLSTATE): connection exceptions (08), serialization failure and
            // deadlock (40001, 40P01), insufficient resources (53), operator intervention (57:
            // shutdown, cannot connect now). A numeric SQLSTATE is not a SQLite code: 22021
            // (a NUL in text) once read as SQLite's BUSY.
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
                || matches!(code, "40001" | "40P01")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_accepts_dollar_placeholders_and_runs_after_commit_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/t.db", dir.path().display());
        let db = Db::connect(&url, None).await.unwrap();
        db.migrate().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        exec!(tx, "CREATE TABLE t (a INTEGER, b TEXT)").unwrap();
        exec!(tx, "INSERT INTO t (b, a) VALUES ($2, $1)", 7_i64, "x").unwrap();
        let woke = Arc::new(Notify::new());
        tx.after_commit(&woke);
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hook = |ran: &Arc<std::sync::atomic::AtomicUsize>| {
            let ran = ran.clone();
            async move {
                tokio::task::yield_now().await;
                ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        };
        tx.on_commit(hook(&ran));
        let mark = tx.hooks_mark();
        tx.on_commit(hook(&ran));
        tx.discard_hooks_since(mark);
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "not before the commit"
        );
        tx.commit().await.unwrap();
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the kept hook has finished when commit returns; the discarded one never runs"
        );
        tokio::time::timeout(Duration::from_secs(1), woke.notified())
            .await
            .expect("commit wakes the hook");
        let (a, b): (i64, String) =
            on_db!(&db, c => sqlx::query_as("SELECT a, b FROM t").fetch_one(c).await).unwrap();
        assert_eq!((a, b.as_str()), (7, "x"));
    }

    #[tokio::test]
    async fn a_hook_that_stalls_does_not_hold_the_commit_and_finishes_later() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), None)
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let (release, stalled) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        tx.on_commit(async move {
            let _ = stalled.await;
            let _ = finished.send(());
        });
        // Were the commit waiting for the hook, it would never return: the hook waits for us.
        tokio::time::timeout(Duration::from_secs(30), tx.commit())
            .await
            .expect("the commit returned")
            .unwrap();
        release.send(()).unwrap();
        done.await.expect("the hook finished in the background");
    }
}
