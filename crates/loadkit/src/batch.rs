//! A fixed list of requests sent as fast as a set of keep-alive connections allows, each
//! connection taking the next unsent one: what the in-process benches measure with.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;

use crate::{
    http::{Conn, Target},
    stats::{histogram, ms},
};

/// One request of a batch.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Bytes>,
}

pub fn get(path: &str) -> Call {
    Call {
        method: Method::GET,
        path: path.to_owned(),
        token: None,
        body: None,
    }
}

pub fn post(path: &str, token: &str, body: &str) -> Call {
    Call {
        method: Method::POST,
        path: path.to_owned(),
        token: Some(token.to_owned()),
        body: Some(Bytes::copy_from_slice(body.as_bytes())),
    }
}

impl Conn {
    async fn call(&mut self, call: &Call) -> anyhow::Result<crate::http::Reply> {
        self.send(
            call.method.clone(),
            &call.path,
            call.token.as_deref(),
            call.body.clone(),
        )
        .await
    }
}

/// `count` connections to `address`, open.
pub async fn connect(address: SocketAddr, count: usize) -> anyhow::Result<Vec<Conn>> {
    let target = Target::at(address);
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let mut conn = Conn::new(target.clone());
        conn.open().await?;
        connections.push(conn);
    }
    Ok(connections)
}

/// `call` on a connection of its own; the body of its 2xx answer.
pub async fn send_once(address: SocketAddr, call: &Call) -> anyhow::Result<String> {
    let reply = Conn::new(Target::at(address)).call(call).await?;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    anyhow::ensure!(reply.status < 300, "status {}: {body}", reply.status);
    Ok(body)
}

/// Sends every call once over `connections`; prints requests/s and latency percentiles (and
/// those of each non-200 status); returns the connections and the count per status.
pub async fn fire(
    name: &str,
    connections: Vec<Conn>,
    calls: Vec<Call>,
) -> anyhow::Result<(Vec<Conn>, BTreeMap<u16, usize>)> {
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = connections
        .into_iter()
        .map(|mut conn| {
            let (calls, next) = (calls.clone(), next.clone());
            tokio::spawn(async move {
                let mut statuses = BTreeMap::<u16, Histogram<u64>>::new();
                while let Some(call) = calls.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let sent = Instant::now();
                    let reply = conn.call(call).await?;
                    let took = sent.elapsed().as_micros() as u64;
                    let _ = statuses
                        .entry(reply.status)
                        .or_insert_with(histogram)
                        .record(took.max(1));
                }
                anyhow::Ok((conn, statuses))
            })
        })
        .collect();
    let mut connections = Vec::new();
    let mut all = histogram();
    let mut statuses = BTreeMap::<u16, Histogram<u64>>::new();
    for worker in workers {
        let (conn, measured) = worker.await??;
        connections.push(conn);
        for (status, latency) in measured {
            let _ = all.add(&latency);
            let _ = statuses
                .entry(status)
                .or_insert_with(histogram)
                .add(&latency);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{name:<44} {} conns: {:>7.0} req/s  {}  ({} requests, {:.1} s)",
        connections.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        quantiles(&all),
        all.len(),
        elapsed.as_secs_f64(),
    );
    let mut counts = BTreeMap::new();
    for (status, latency) in statuses {
        counts.insert(status, latency.len() as usize);
        if status != 200 {
            println!(
                "{:<44}   status {status}: {:>6} answers, {}",
                "",
                latency.len(),
                quantiles(&latency)
            );
        }
    }
    Ok((connections, counts))
}

/// `p50 … ms  p99 … ms` of `latencies`.
pub fn percentiles(latencies: &[Duration]) -> String {
    let mut measured = histogram();
    for latency in latencies {
        let _ = measured.record((latency.as_micros() as u64).max(1));
    }
    quantiles(&measured)
}

fn quantiles(latency: &Histogram<u64>) -> String {
    format!(
        "p50 {:>6.2} ms  p99 {:>6.2} ms",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99))
    )
}
