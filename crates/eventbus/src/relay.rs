//! The relay: publishes committed outbox rows to the bus, in order.
//!
//! It is woken when a transaction that appended events commits (in-process), by PostgreSQL
//! `NOTIFY` for rows written by other instances, and by a polling fallback. On PostgreSQL only
//! one instance relays at a time (a session advisory lock per schema); the others take over
//! within a polling interval if the leader goes away.

use std::time::{Duration, Instant};

use db::{sqlx, Db};
use sqlx::{pool::PoolConnection, postgres::PgConnection, Connection as _};
use tokio_util::sync::CancellationToken;

use tokio::task::JoinHandle;

use crate::{bus::EventBus, listen};

impl EventBus {
    /// Starts the relay (and, on PostgreSQL, the `LISTEN` task that wakes it, the db://
    /// consumers and paused Kafka consumers when other instances commit or publish). Every role
    /// runs it: it is how events written by this process leave it.
    pub async fn start(&self, shutdown: &CancellationToken) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        if let Db::Postgres(pool) = &self.inner.db {
            tasks.push(listen::start(pool, self.clone(), shutdown).await?);
        }
        tasks.extend(self.inner.transport.background(&self.inner.db, shutdown));
        tasks.push(tokio::spawn(run(self.clone(), shutdown.clone())));
        Ok(tasks)
    }
}

/// Runs the relay until `shutdown`.
pub(crate) async fn run(bus: EventBus, shutdown: CancellationToken) {
    let mut leadership = Leadership::default();
    let batch = bus.inner.settings.batch_size.max(1);
    let mut last_prune = Instant::now();
    while !shutdown.is_cancelled() {
        if leadership
            .holds(&bus.inner.db, bus.inner.settings.poll_interval)
            .await
        {
            loop {
                match bus.relay_once(batch).await {
                    Ok(published) => {
                        if published > 0 {
                            bus.inner.log_tick.send_modify(|tick| *tick += 1);
                        }
                        if (published as i64) < batch {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "relay failed; retrying");
                        leadership.check().await;
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                            () = shutdown.cancelled() => {}
                        }
                        break;
                    }
                }
            }
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = Instant::now();
                if let Err(error) = bus.prune().await {
                    tracing::warn!(error = format!("{error:#}"), "outbox pruning failed");
                }
            }
        }
        tokio::select! {
            () = bus.inner.relay_wake.notified() => {}
            () = tokio::time::sleep(bus.inner.settings.poll_interval) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

/// Relay leadership on PostgreSQL: a session advisory lock held on a connection of its own
/// (detached from the pool, so the lock dies with it). SQLite has a single process.
#[derive(Default)]
struct Leadership {
    conn: Option<PgConnection>,
    leader: bool,
    last_attempt: Option<Instant>,
}

impl Leadership {
    async fn holds(&mut self, db: &Db, retry_every: Duration) -> bool {
        let pool = match db {
            Db::Sqlite(_) => return true,
            Db::Postgres(pool) => pool,
        };
        if self.leader {
            return true;
        }
        if self.last_attempt.is_some_and(|t| t.elapsed() < retry_every) {
            return false;
        }
        self.last_attempt = Some(Instant::now());
        if self.conn.is_none() {
            match pool.acquire().await.map(PoolConnection::detach) {
                Ok(conn) => self.conn = Some(conn),
                Err(error) => {
                    tracing::warn!(%error, "relay cannot connect");
                    return false;
                }
            }
        }
        let conn = self.conn.as_mut().expect("connection just set");
        match sqlx::query_scalar::<_, bool>(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':stampede-relay'))",
        )
        .fetch_one(&mut *conn)
        .await
        {
            Ok(leader) => {
                if leader {
                    tracing::info!("this instance now relays the outbox");
                }
                self.leader = leader;
            }
            Err(error) => {
                tracing::warn!(%error, "relay leadership check failed");
                self.conn = None;
            }
        }
        self.leader
    }

    /// After a failure: if the leader's connection is gone, so is the lock.
    async fn check(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            if conn.ping().await.is_err() {
                self.conn = None;
                self.leader = false;
            }
        }
    }
}
