//! The HTTP server loop: hyper with a header-read timeout (which also closes idle keep-alive
//! connections), an idle limit for every connection (HTTP/2 included), the peer's address on
//! every request (`ConnectInfo`), a cap on open connections, and a shutdown bounded by a grace
//! period.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{extract::ConnectInfo, http::Request, Router};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::http::place_streams::PlaceStreams;

/// The connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long a request may take until its response starts.
    pub request_timeout: Duration,
    /// After shutdown begins, how long open connections get to finish.
    pub grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes. Then it stops accepting, cancels
/// `streams` (open SSE streams end, so their connections can close), and waits for the open
/// connections to finish their requests, at most `limits.grace`; those still open after that
/// are dropped. Returns when the shutdown began, from which the rest of the grace is counted.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    streams: CancellationToken,
    place_streams: Option<PlaceStreams>,
) -> tokio::time::Instant {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let closing = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let (builder, closing) = (builder.clone(), closing.clone());
        let place_streams = place_streams.clone();
        tokio::spawn(async move {
            let stream = match place_streams {
                Some(place_streams) => place_streams.enter(stream).await,
                None => Some(stream),
            };
            if let Some(stream) = stream {
                // Boxed: a connection held by a place stream does not carry hyper's state.
                Box::pin(connection(stream, service, &builder, &closing, limits)).await;
            }
            drop(slot);
        });
    }
    let began = tokio::time::Instant::now();
    drop(listener);
    streams.cancel();
    closing.cancel();
    let open = limits.max_connections - slots.available_permits();
    tracing::info!(
        open,
        "shutting down: streams ended, waiting for open connections"
    );
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => tracing::info!("every connection closed"),
        () = tokio::time::sleep_until(began + limits.grace) => tracing::warn!(
            grace_ms = limits.grace.as_millis() as u64,
            "grace period over; dropping the connections still open"
        ),
    }
    began
}

/// Serves one connection with hyper until it ends, is closed idle, or outlasts the grace
/// period after `closing`.
async fn connection<S>(
    stream: TcpStream,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    closing: &CancellationToken,
    limits: ConnectionLimits,
) where
    S: tower::Service<
            Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let (io, activity) = Watched::new(stream);
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    // Once asked to close, a connection gets this long to finish; an HTTP/2 peer that
    // never answers the closing ping would otherwise hold it forever.
    let mut must_end_by: Option<tokio::time::Instant> = None;
    loop {
        let deadline = must_end_by.unwrap_or_else(far_future);
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                break;
            }
            () = closing.cancelled(), if must_end_by.is_none() => {
                must_end_by = Some(tokio::time::Instant::now() + limits.grace);
                connection.as_mut().graceful_shutdown();
            }
            () = activity.idle(limits.idle()), if must_end_by.is_none() => {
                must_end_by = Some(tokio::time::Instant::now() + limits.header_timeout);
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(deadline), if must_end_by.is_some() => {
                tracing::debug!("a closing connection did not finish in time; dropped");
                break;
            }
        }
    }
}

/// An instant no timer reaches (a disabled `select!` branch still builds its future).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

impl ConnectionLimits {
    /// How long a connection may carry no byte either way before it is closed: any request has
    /// answered by then (the request timeout), and an open stream writes a heartbeat well
    /// within it. HTTP/1.1 keep-alive connections close sooner, at the header timeout; this
    /// bounds HTTP/2, whose idle connections hyper keeps forever.
    fn idle(&self) -> Duration {
        self.header_timeout + self.request_timeout
    }
}

/// A connection's socket, noting when a byte last went either way.
struct Watched {
    stream: TcpStream,
    activity: Activity,
}

/// When a connection last carried a byte, in milliseconds since it opened.
#[derive(Clone)]
struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Completes once the connection has carried nothing for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = self.opened + last + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

impl Watched {
    fn new(stream: TcpStream) -> (Self, Activity) {
        let activity = Activity {
            opened: Instant::now(),
            last_ms: Arc::default(),
        };
        let watched = Self {
            stream,
            activity: activity.clone(),
        };
        (watched, activity)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The next connection, with Nagle's algorithm off: an SSE event written while the previous one
/// is unacknowledged would otherwise wait for the client's delayed ACK (40 ms on Linux).
async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok((stream, peer))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, _client) = tokio::join!(super::accept(&listener), client);
        assert!(accepted.unwrap().0.nodelay().unwrap(), "TCP_NODELAY is set");
    }
}
