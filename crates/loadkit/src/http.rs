//! HTTP/1.1 as a load generator needs it: one keep-alive connection per virtual user (hyper's
//! client connection, no pool), and Server-Sent Events read on a connection of their own.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    client::conn::http1::{self, SendRequest},
    header, Method, Request,
};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

/// Where the load goes: `http://host:port`, and the local addresses its connections leave from.
#[derive(Debug)]
pub struct Target {
    pub address: SocketAddr,
    pub host: String,
    /// Connections leave from these in turn (none: the system picks). One source address
    /// has about 28,000 ephemeral ports towards one server address.
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
}

impl Target {
    /// The server at `address`.
    pub fn at(address: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            address,
            host: address.to_string(),
            sources: Vec::new(),
            next_source: AtomicUsize::new(0),
        })
    }

    /// The server at `base_url` (`http://host:port`).
    pub fn parse(base_url: &str) -> anyhow::Result<Arc<Self>> {
        Self::parse_from(base_url, Vec::new())
    }

    /// The server at `base_url`, connected to from each of `sources` in turn.
    pub fn parse_from(base_url: &str, sources: Vec<IpAddr>) -> anyhow::Result<Arc<Self>> {
        let host = base_url
            .strip_prefix("http://")
            .context("the base URL must start with http://")?
            .trim_end_matches('/');
        let address = std::net::ToSocketAddrs::to_socket_addrs(host)
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Arc::new(Self {
            address,
            host: host.to_owned(),
            sources,
            next_source: AtomicUsize::new(0),
        }))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request
            .body(Full::new(body.unwrap_or_default()))
            .expect("a request of a valid method and path")
    }

    /// A new connection, from the next source address if any are set.
    async fn open_stream(&self) -> std::io::Result<TcpStream> {
        if self.sources.is_empty() {
            return TcpStream::connect(self.address).await;
        }
        let at = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
        let source = self.sources[at];
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.address).await
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = self.open_stream().await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// A response: status and whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The problem's `code` of an error answer.
    pub fn code(&self) -> Option<String> {
        if self.status < 400 {
            return None;
        }
        self.json()["code"].as_str().map(str::to_owned)
    }
}

/// One keep-alive connection, opened on first use and again after it fails.
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(target: Arc<Target>) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    /// Connects now rather than on the first request.
    pub async fn open(&mut self) -> anyhow::Result<()> {
        self.sender = Some(self.target.connect().await?);
        Ok(())
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Reply> {
        let result = self.try_send(method, path, token, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Reply> {
        let usable = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.sender = Some(self.target.connect().await?);
        }
        let sender = self.sender.as_mut().expect("a connection");
        let response = sender
            .send_request(self.target.request(method, path, token, body))
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }
}

/// Reads the SSE stream at `path` on a connection of its own, handing each event's name and
/// `data` to `on_event` until it returns true (then `Ok(true)`), the stream ends (`Ok(false)`)
/// or `timeout` passes (an error).
pub async fn follow_events(
    target: &Target,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    mut on_event: impl FnMut(&str, &serde_json::Value) -> bool,
) -> anyhow::Result<bool> {
    let read = async {
        let mut sender = target.connect().await?;
        let mut request = target.request(Method::GET, path, token, None);
        request.headers_mut().insert(
            header::ACCEPT,
            header::HeaderValue::from_static("text/event-stream"),
        );
        let response = sender.send_request(request).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "stream {path}: status {}",
            response.status()
        );
        let mut body = response.into_body();
        let mut buffer = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = find_blank_line(&buffer) {
                let block: Vec<u8> = buffer.drain(..end + 2).collect();
                let (mut name, mut payload) = ("message".to_owned(), String::new());
                for line in String::from_utf8_lossy(&block).lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        payload.push_str(value.trim_start());
                    }
                }
                if payload.is_empty() {
                    continue;
                }
                let value = serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
                if on_event(&name, &value) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    };
    tokio::time::timeout(timeout, read)
        .await
        .with_context(|| format!("stream {path}: no answer within {timeout:?}"))?
}

fn find_blank_line(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n")
}
