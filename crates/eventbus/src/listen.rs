//! Wake-ups between processes on PostgreSQL: a commit to the outbox wakes the relays, a
//! publish to the db:// log wakes its consumers, and a Kafka publish wakes paused consumers of
//! its topics (`doorbell.rs`), all through `LISTEN`/`NOTIFY`.

use std::time::Duration;

use anyhow::Context as _;
use db::sqlx;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{bus::EventBus, transport::BUS_CHANNEL};

/// Listens on `pool` until `shutdown`, passing each notification on to `bus`.
pub(crate) async fn start(
    pool: &sqlx::PgPool,
    bus: EventBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener
        .listen_all(["stampede_outbox", "stampede_log", BUS_CHANNEL])
        .await
        .context("LISTEN for outbox notifications")?;
    let stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                notification = listener.recv() => match notification {
                    Ok(n) => match n.channel() {
                        "stampede_outbox" => bus.inner.relay_wake.notify_one(),
                        "stampede_log" => bus.inner.log_tick.send_modify(|tick| *tick += 1),
                        _ => bus.inner.transport.heard(n.payload()),
                    },
                    // The database is shutting down: give the connection back, or
                    // closing the pool would wait for it forever.
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                () = stop.cancelled() => break,
            }
        }
    }))
}
