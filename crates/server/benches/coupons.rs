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
//! The generator ([`support::raw`]) writes pre-built HTTP/1.1 requests on raw TCP
//! connections, so that it costs as little of the shared CPU as possible.
//!
//! Run: `cargo bench -p server --bench coupons`.

use std::time::{Duration, Instant};

use loadkit::batch::{connect, fire, get, post, send_once, Call};
use server::Settings;

mod support;

const CONNECTIONS: usize = 1_000;

async fn run(name: &str, settings: Settings, users: usize, stock: usize) -> anyhow::Result<()> {
    let app = support::start(settings).await?;
    let address = app.address;
    let state = app.state.clone();

    let admin = state.tokens.issue(1, true)?.0;
    let coupon = support::create_coupon(address, &admin, stock).await?;

    let connections = connect(address, CONNECTIONS).await?;

    let ceiling = vec![get("/health/live"); users];
    let (connections, _) = fire(
        &format!("{name}: GET /health/live (ceiling)"),
        connections,
        ceiling,
    )
    .await?;

    let requests: Vec<Call> = (0..users)
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
    app.stop().await?;
    Ok(())
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
