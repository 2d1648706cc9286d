//! A waiting room's place streams, served beside hyper: a sale's crowd holds one open per
//! person, so what an idle one costs decides how many people an instance can hold. Through
//! hyper a connection keeps two 8 KiB buffers and a 2 KiB task for as long as it is open
//! (`scripts/crowd-cost`); here a connection whose first request is a plain
//! `GET /api/room-places/{placeId}/events` is answered by a small loop that holds the place's
//! watch, a timer and the socket, and nothing else.
//!
//! The bytes on the wire are the ones the axum route ([`super::rooms::place_events`]) sends, and
//! anything this loop does not handle is left unread for hyper to serve the usual way: another
//! path, a head split over packets, HTTP/1.0 or HTTP/2, a body, a percent-encoded id, and every
//! refusal (a full stream cap, an unknown place, an unreachable line): those answers come from
//! the route, problem+json and all. When the stream ends because the place stopped waiting, the
//! connection goes back to hyper for the client's next request.

use std::time::Duration;

use futures::StreamExt as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
    time::Instant,
};

use super::request_id;
use crate::state::AppState;

/// The route as the metrics label it (axum's matched path).
const ROUTE: &str = "/api/room-places/{placeId}/events";
/// A request head longer than this goes to hyper.
const MAX_HEAD: usize = 2048;
/// Headers past this many go to hyper.
const MAX_HEADERS: usize = 24;
/// Comment lines keep idle streams (and proxies) alive; the same period as [`super::sse`].
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Serves place streams on connections before hyper sees them.
#[derive(Clone)]
pub struct PlaceStreams {
    state: AppState,
    /// How long the client may take to send its request's head, and to take each write.
    patience: Duration,
}

/// What a connection's first bytes say.
enum Peeked {
    /// A plain place-stream request.
    Asked(Asked),
    /// Anything else, for hyper.
    Other,
    /// Nothing within the client's patience, or the client went away.
    Nothing,
}

/// What a plain place-stream request asks.
#[derive(Debug, PartialEq, Eq)]
struct Asked {
    /// The head's length in bytes.
    head: usize,
    place: String,
    last_event_id: Option<String>,
    request_id: Option<String>,
    /// The client asked to close the connection after this response.
    close: bool,
}

impl PlaceStreams {
    pub fn new(state: AppState, patience: Duration) -> Self {
        Self { state, patience }
    }

    /// Serves `stream` if its first request is a place stream this loop can answer. Gives the
    /// connection back for hyper to serve (its next request, or this one when it is not a
    /// plain place stream); `None` when it is closed or must close.
    pub async fn enter(&self, mut stream: TcpStream) -> Option<TcpStream> {
        let mut asked = match self.peek(&stream).await {
            Peeked::Asked(asked) => asked,
            Peeked::Other => return Some(stream),
            Peeked::Nothing => return None,
        };
        let Ok(slot) = self.state.limits.open_stream(None) else {
            return Some(stream);
        };
        let started = Instant::now();
        let Ok(places) =
            rooms::follow::follow(&self.state.rooms, &asked.place, asked.last_event_id.take())
                .await
        else {
            return Some(stream);
        };
        let mut head = vec![0; asked.head];
        stream.read_exact(&mut head).await.ok()?;
        drop(head);
        let request_id = asked
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.write(&mut stream, response_head(&request_id).as_bytes())
            .await?;
        super::metrics::count_request("GET", ROUTE, 200, started.elapsed());

        let shutdown = self.state.shutdown.clone();
        let mut places = std::pin::pin!(places);
        // A client that sends its next request while the stream is open gets it answered
        // once the stream ends; only its going away is looked for meanwhile.
        let mut pipelined = false;
        let mut heartbeat = Instant::now() + HEARTBEAT;
        let ended_on_its_own = loop {
            tokio::select! {
                place = places.next() => match place {
                    Some(place) => {
                        let json = serde_json::to_string(&place).expect("a place serializes");
                        let event = format!("event: place\nid: {}\ndata: {json}\n\n", place.event_id());
                        self.write(&mut stream, &chunk(event.as_bytes())).await?;
                        heartbeat = Instant::now() + HEARTBEAT;
                    }
                    None => break true,
                },
                () = tokio::time::sleep_until(heartbeat) => {
                    self.write(&mut stream, &chunk(b":\n\n")).await?;
                    heartbeat = Instant::now() + HEARTBEAT;
                }
                () = shutdown.cancelled() => break false,
                peeked = std::future::poll_fn(|cx| {
                    stream.poll_peek(cx, &mut ReadBuf::new(&mut [0; 1]))
                }), if !pipelined => match peeked {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => pipelined = true,
                },
            }
        };
        drop(slot);
        self.write(&mut stream, b"0\r\n\r\n").await?;
        (ended_on_its_own && !asked.close).then_some(stream)
    }

    /// What the head of `stream` asks, left unread. A connection that has asked nothing when
    /// the server begins to shut down is closed, as hyper closes an idle one (a client's pool
    /// may open a connection it never uses; waiting for its head would hold the shutdown for
    /// the whole grace).
    async fn peek(&self, stream: &TcpStream) -> Peeked {
        let mut buffer = vec![0; MAX_HEAD];
        let peeked = tokio::select! {
            peeked = tokio::time::timeout(self.patience, stream.peek(&mut buffer)) => peeked,
            () = self.state.shutdown.cancelled() => return Peeked::Nothing,
        };
        match peeked {
            Ok(Ok(0) | Err(_)) | Err(_) => Peeked::Nothing,
            Ok(Ok(read)) => parse(&buffer[..read]).map_or(Peeked::Other, Peeked::Asked),
        }
    }

    /// Writes `bytes`, within the client's patience; `None` when the client is gone or stalled.
    async fn write(&self, stream: &mut TcpStream, bytes: &[u8]) -> Option<()> {
        match tokio::time::timeout(self.patience, stream.write_all(bytes)).await {
            Ok(Ok(())) => Some(()),
            Ok(Err(error)) => {
                tracing::debug!(%error, "a place stream's client went away");
                None
            }
            Err(_) => {
                tracing::debug!("a place stream's client stopped reading; closed");
                None
            }
        }
    }
}

/// Reads `bytes` as a plain place-stream request: a complete HTTP/1.1 `GET` of
/// `/api/room-places/{placeId}/events` with no body and no upgrade.
fn parse(bytes: &[u8]) -> Option<Asked> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = request.parse(bytes).ok()? else {
        return None;
    };
    if request.method? != "GET" || request.version? != 1 {
        return None;
    }
    let path = request.path?;
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let place = path
        .strip_prefix("/api/room-places/")?
        .strip_suffix("/events")?;
    if place.is_empty()
        || !place
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let mut asked = Asked {
        head,
        place: place.to_owned(),
        last_event_id: None,
        request_id: None,
        close: false,
    };
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).ok()?;
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") && value.trim() != "0"
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return None;
        }
        if name.eq_ignore_ascii_case("last-event-id") {
            asked.last_event_id = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case(request_id::HEADER.as_str()) {
            asked.request_id = Some(value.to_owned()).filter(|id| request_id::plain(id));
        } else if name.eq_ignore_ascii_case("connection") {
            asked.close = value
                .split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("close"));
        }
    }
    Some(asked)
}

/// The response head the axum route sends, body chunked.
fn response_head(request_id: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         x-request-id: {request_id}\r\ntransfer-encoding: chunked\r\ndate: {}\r\n\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    )
}

/// `bytes` as one chunk of a chunked body.
fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:X}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_place_stream_request_is_taken_with_its_resume_point_and_request_id() {
        let head = "GET /api/room-places/1-2-3-abc/events?x=1 HTTP/1.1\r\nHost: a\r\n\
                    Last-Event-ID: 1-2-W-7\r\nX-Request-Id: run.1\r\nAccept: text/event-stream\r\n\r\n";
        let asked = parse(head.as_bytes()).expect("taken");
        assert_eq!(asked.head, head.len());
        assert_eq!(asked.place, "1-2-3-abc");
        assert_eq!(asked.last_event_id.as_deref(), Some("1-2-W-7"));
        assert_eq!(asked.request_id.as_deref(), Some("run.1"));
        assert!(!asked.close);
        let closing = "GET /api/room-places/1-2-3-abc/events HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n";
        assert!(parse(closing.as_bytes()).expect("taken").close);
    }

    #[test]
    fn anything_but_a_whole_plain_place_stream_request_is_left_for_hyper() {
        for head in [
            "GET /api/room-places/1-2-3-abc/events HTTP/1.1\r\nHost: a\r\n",
            "GET /api/room-places/1-2-3-abc/events HTTP/1.0\r\n\r\n",
            "POST /api/room-places/1-2-3-abc/events HTTP/1.1\r\n\r\n",
            "GET /api/room-places/1-2-3-abc HTTP/1.1\r\n\r\n",
            "GET /api/room-places//events HTTP/1.1\r\n\r\n",
            "GET /api/room-places/1%2D2/events HTTP/1.1\r\n\r\n",
            "GET /api/room-places/a/b/events HTTP/1.1\r\n\r\n",
            "GET /api/room-places/1-2-3-abc/events HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "GET /api/room-places/1-2-3-abc/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /api/room-places/1-2-3-abc/events HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert_eq!(parse(head.as_bytes()), None, "{head:?}");
        }
    }

    #[test]
    fn a_chunk_is_framed_with_its_length_in_hex() {
        assert_eq!(chunk(b":\n\n"), b"3\r\n:\n\n\r\n");
        assert_eq!(&chunk(&[b'x'; 26])[..4], b"1A\r\n");
    }
}
