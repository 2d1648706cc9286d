//! A flash sale: `BENCH_USERS` (default 100,000) users each ask once for a coupon with
//! `BENCH_STOCK` (default 10,000) units, over 1,000 concurrent keep-alive connections, against
//! the real app in this process (the load generator shares the machine's cores with it).
//!
//! Prints requests/s, latency percentiles and the answers of `POST /api/coupons/{id}/issue`,
//! the time until every accepted task is terminal (consumers idle), and the issued count
//! checked against the stock; and, as the ceiling, `GET /health/live` fired by the same
//! generator over the same connections in the same run.
//! - embedded (SQLite, memory, db://), always;
//! - production (PostgreSQL, Redis, Kafka), when `STAMPEDE_TEST_DATABASE_URL`, `_CACHE_URL`
//!   and `_BUS_URL` are set.
//!
//! The generator writes pre-built HTTP/1.1 requests on raw TCP connections and reads each
//! response by its `Content-Length`, so that it costs as little of the shared CPU as possible.
//!
//! Run: `cargo bench -p server --bench coupons`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use server::{Application, Settings};

mod support;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const CONNECTIONS: usize = 1_000;

async fn run(name: &str, settings: Settings, users: usize, stock: usize) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let address = app.address();
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let admin = state.tokens.issue(1, true)?.0;
    let created = send_once(
        address,
        &post(
            "/api/admin/coupons",
            &admin,
            &serde_json::json!({
                "name": "bench flash sale",
                "discountType": "FIXED",
                "discountValue": 1000,
                "totalQuantity": stock,
                "expiresAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            })
            .to_string(),
        ),
    )
    .await?;
    let coupon: serde_json::Value = serde_json::from_str(&created)?;
    let coupon = coupon["id"].as_i64().expect("coupon id");

    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        connections.push(stream);
    }

    let ceiling: Vec<Vec<u8>> = (0..users)
        .map(|_| b"GET /health/live HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec())
        .collect();
    let (connections, _) = fire(
        &format!("{name}: GET /health/live (ceiling)"),
        connections,
        ceiling,
    )
    .await?;

    let requests: Vec<Vec<u8>> = (0..users)
        .map(|n| {
            let token = state
                .tokens
                .issue(1_000 + n as i64, false)
                .expect("token")
                .0;
            post(&format!("/api/coupons/{coupon}/issue"), &token, "{}")
        })
        .collect();
    let started = Instant::now();
    let (_, answers) = fire(
        &format!("{name}: POST /api/coupons/{{id}}/issue"),
        connections,
        requests,
    )
    .await?;
    state.bus.wait_idle(Duration::from_secs(600)).await?;
    let settled = started.elapsed();
    let detail = send_once(address, &get(&format!("/api/coupons/{coupon}"))).await?;
    let detail: serde_json::Value = serde_json::from_str(&detail)?;
    let issued = stock as i64 - detail["remainingQuantity"].as_i64().expect("remaining");
    println!(
        "{name:<44} answers {answers:?}; every task terminal {:.1} s after the first request; issued {issued} of {stock}",
        settled.as_secs_f64()
    );
    assert_eq!(issued, stock as i64, "every unit issued, none twice");
    let _ = stop.send(());
    server.await??;
    Ok(())
}

fn post(path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

/// One request on a fresh connection; the response body.
async fn send_once(address: SocketAddr, request: &[u8]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    let mut buffer = Vec::new();
    let (status, body) = exchange(&mut stream, &mut buffer, request).await?;
    anyhow::ensure!(status < 300, "status {status}: {body}");
    Ok(body)
}

/// Writes `request` and reads one response; its status and body.
async fn exchange(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    request: &[u8],
) -> anyhow::Result<(u16, String)> {
    stream.write_all(request).await?;
    buffer.clear();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end])?;
            let status: u16 = head.get(9..12).unwrap_or("0").parse()?;
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                anyhow::ensure!(stream.read_buf(buffer).await? > 0, "connection closed");
            }
            let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
            return Ok((status, body));
        }
        anyhow::ensure!(stream.read_buf(buffer).await? > 0, "connection closed");
    }
}

/// Sends every request once over `connections` (each takes the next unsent request); prints
/// requests/s and latency percentiles; returns the connections and the count per status.
async fn fire(
    name: &str,
    connections: Vec<TcpStream>,
    requests: Vec<Vec<u8>>,
) -> anyhow::Result<(Vec<TcpStream>, BTreeMap<u16, usize>)> {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = connections
        .into_iter()
        .map(|mut stream| {
            let (requests, next) = (requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::with_capacity(1024);
                let mut latencies = Vec::new();
                let mut statuses = BTreeMap::<u16, Vec<Duration>>::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let sent = Instant::now();
                    let (status, _) = exchange(&mut stream, &mut buffer, request).await?;
                    let took = sent.elapsed();
                    latencies.push(took);
                    statuses.entry(status).or_default().push(took);
                }
                anyhow::Ok((stream, latencies, statuses))
            })
        })
        .collect();
    let mut connections = Vec::new();
    let mut latencies = Vec::new();
    let mut statuses = BTreeMap::<u16, Vec<Duration>>::new();
    for worker in workers {
        let (stream, l, s) = worker.await??;
        connections.push(stream);
        latencies.extend(l);
        for (status, l) in s {
            statuses.entry(status).or_default().extend(l);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{name:<44} {CONNECTIONS} conns: {:>7.0} req/s  {}  ({} requests, {:.1} s)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentiles(&mut latencies),
        latencies.len(),
        elapsed.as_secs_f64(),
    );
    let mut counts = BTreeMap::new();
    for (status, mut latencies) in statuses {
        counts.insert(status, latencies.len());
        if status != 200 {
            println!(
                "{:<44}   status {status}: {:>6} answers, {}",
                "",
                latencies.len(),
                percentiles(&mut latencies)
            );
        }
    }
    Ok((connections, counts))
}

fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    format!("p50 {:>6.2} ms  p99 {:>6.2} ms", at(0.50), at(0.99))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users = support::env_number("BENCH_USERS", 100_000);
    let stock = support::env_number("BENCH_STOCK", 10_000);
    let dir = tempfile::tempdir()?;
    for (name, settings) in support::deployments(dir.path()) {
        run(name, settings, users, stock).await?;
    }
    Ok(())
}
