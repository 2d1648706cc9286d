//! `POST /api/users/{id}/points/charge` under load: 64 concurrent clients, each its own user
//! and keep-alive connection, for `BENCH_SECS` (default 10) per deployment, against the real
//! app in this process (the load generator shares the machine's cores with it).
//! - embedded (SQLite, memory, db://), always;
//! - production, when `STAMPEDE_TEST_DATABASE_URL`, `_CACHE_URL` and `_BUS_URL` are set.
//!
//! Run: `cargo bench -p server --bench charge`.

use std::time::{Duration, Instant};

use server::Settings;

mod support;

const CLIENTS: usize = 64;

async fn run(name: &str, settings: Settings, seconds: u64) -> anyhow::Result<()> {
    let app = support::start(settings).await?;
    let base = format!("http://{}", app.address);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;

    let mut users = Vec::new();
    for n in 0..CLIENTS {
        let email = format!("bench{n}-{}@example.com", uuid::Uuid::now_v7().simple());
        let body = serde_json::json!({ "name": "bench", "email": email, "password": "pass-word" });
        let created: serde_json::Value = client
            .post(format!("{base}/api/users"))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        let id = created["id"].as_i64().expect("user id");
        users.push((id, app.state.tokens.issue(id, false)?.0));
    }

    let ceiling: Vec<(String, Option<String>)> = (0..CLIENTS)
        .map(|_| (format!("{base}/health/live"), None))
        .collect();
    let charges: Vec<(String, Option<String>)> = users
        .into_iter()
        .map(|(id, token)| (format!("{base}/api/users/{id}/points/charge"), Some(token)))
        .collect();
    fire(
        &format!("{name}: GET /health/live (ceiling)"),
        &client,
        ceiling,
        seconds,
    )
    .await?;
    fire(&format!("{name}: POST charge"), &client, charges, seconds).await?;
    app.stop().await?;
    Ok(())
}

/// One task per `(url, token)`: a GET when there is no token, else a charge of 10,000; prints
/// requests/s and latency percentiles.
async fn fire(
    name: &str,
    client: &reqwest::Client,
    targets: Vec<(String, Option<String>)>,
    seconds: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = targets.into_iter().map(|(url, token)| {
        let client = client.clone();
        tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let request = match &token {
                    Some(token) => client
                        .post(&url)
                        .bearer_auth(token)
                        .json(&serde_json::json!({ "amount": 10_000 })),
                    None => client.get(&url),
                };
                let sent = Instant::now();
                match request.send().await {
                    Ok(r) if r.status() == 200 => latencies.push(sent.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        })
    });
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in futures::future::join_all(workers).await {
        let (l, e) = worker?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{name:<40} {CLIENTS} clients: {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} ok, {errors} errors, {:.1} s)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
        latencies.len(),
        elapsed.as_secs_f64(),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = support::env_number("BENCH_SECS", 10) as u64;
    let dir = tempfile::tempdir()?;
    for (name, settings) in support::deployments(dir.path()) {
        run(name, settings, seconds).await?;
    }
    Ok(())
}
