//! A load generator that costs as little of the shared CPU as it can: pre-built HTTP/1.1
//! requests written on raw keep-alive TCP connections, each response read by its
//! `Content-Length`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// `count` keep-alive connections to `address`.
pub async fn connect(address: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        connections.push(stream);
    }
    Ok(connections)
}

pub fn post(path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

/// One request on a fresh connection; the response body.
pub async fn send_once(address: SocketAddr, request: &[u8]) -> anyhow::Result<String> {
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
pub async fn fire(
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
        "{name:<44} {} conns: {:>7.0} req/s  {}  ({} requests, {:.1} s)",
        connections.len(),
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

pub fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    format!("p50 {:>6.2} ms  p99 {:>6.2} ms", at(0.50), at(0.99))
}
