//! The HTTP server loop: hyper with a header-read timeout (which also closes idle keep-alive
//! connections), a cap on open connections, and a shutdown bounded by a grace period.

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

/// The connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// After shutdown begins, how long open connections get to finish.
    pub grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes. Then it stops accepting, cancels
/// `streams` (open SSE streams end, so their connections can close), and waits for the open
/// connections to finish their requests, at most `limits.grace`; those still open after that
/// are dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    streams: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    streams.cancel();
    let open = graceful.count();
    tracing::info!(
        open,
        "shutting down: streams ended, waiting for open connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every connection closed"),
        () = tokio::time::sleep(limits.grace) => tracing::warn!(
            grace_ms = limits.grace.as_millis() as u64,
            "grace period over; dropping the connections still open"
        ),
    }
}

/// The next connection, with Nagle's algorithm off: an SSE event written while the previous one
/// is unacknowledged would otherwise wait for the client's delayed ACK (40 ms on Linux).
async fn accept(listener: &TcpListener) -> std::io::Result<tokio::net::TcpStream> {
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, _client) = tokio::join!(super::accept(&listener), client);
        assert!(accepted.unwrap().nodelay().unwrap(), "TCP_NODELAY is set");
    }
}
