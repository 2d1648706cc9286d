//! The order saga under load, per deployment, against the real app in this process (the load
//! generator, PostgreSQL, Redis and the broker share the machine's cores with it):
//! 0. 200 orders placed at 50/s, which the saga keeps up with: its `PENDING` →
//!    `AWAITING_PAYMENT` latency (from the order's creation to its priced status change, as
//!    stored) when nothing queues;
//! 1. `BENCH_ORDERS` (default 5,000) orders of one unit placed by 64 clients, each its own user
//!    and keep-alive connection: `POST /api/orders` requests/s and latency;
//! 2. the saga behind that burst: the same latency, now mostly queueing, and priced orders/s
//!    from the first order's creation to the last one's pricing;
//! 3. every order paid by the same clients: `POST /api/orders/{id}/payment` requests/s and
//!    latency.
//!
//! Embedded always; production (Kafka bus) when the `STAMPEDE_TEST_*` URLs are set.
//! Run: `cargo bench -p server --bench orders`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use db::{on_db, sqlx};
use futures::{stream, StreamExt};
use serde_json::{json, Value};
use server::Settings;

mod support;

const CLIENTS: usize = 64;
/// Orders of phase 0, placed one every 20 ms.
const PACED: usize = 200;

async fn run(name: &str, settings: Settings, orders: usize) -> anyhow::Result<()> {
    let app = support::start(settings).await?;
    let state = app.state.clone();
    let base = format!("http://{}", app.address);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;

    let admin = state.tokens.issue(1, true)?.0;
    let product: Value = client
        .post(format!("{base}/api/admin/products"))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "Bench runner",
            "category": "shoes",
            "description": "shoes for benchmarks",
            "options": (0..4).map(|i| json!({ "name": format!("size {i}"), "price": 1_000, "stock": 1_000_000_000 })).collect::<Vec<_>>()
        }))
        .send()
        .await?
        .json()
        .await?;
    let options: Vec<i64> = product["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| o["id"].as_i64().expect("option id"))
        .collect();
    let mut users = Vec::new();
    for n in 0..CLIENTS {
        let email = format!("order{n}-{}@example.com", uuid::Uuid::now_v7().simple());
        let created: Value = client
            .post(format!("{base}/api/users"))
            .json(&json!({ "name": "bench", "email": email, "password": "pass-word" }))
            .send()
            .await?
            .json()
            .await?;
        let id = created["id"].as_i64().expect("user id");
        let token = state.tokens.issue(id, false)?.0;
        client
            .post(format!("{base}/api/users/{id}/points/charge"))
            .bearer_auth(&token)
            .json(&json!({ "amount": 1_000_000 }))
            .send()
            .await?
            .error_for_status()?;
        users.push(token);
    }

    // 0. The saga when it keeps up.
    let mut paced = tokio::time::interval(Duration::from_millis(20));
    let mut trickle = Vec::new();
    for i in 0..PACED {
        paced.tick().await;
        let (client, base) = (client.clone(), base.clone());
        let (token, option) = (users[i % CLIENTS].clone(), options[i % options.len()]);
        trickle.push(tokio::spawn(async move {
            place(&client, &base, &token, option).await
        }));
    }
    let mut trickle_ids = Vec::new();
    for placing in trickle {
        trickle_ids.push(placing.await?.0);
    }
    state.bus.wait_idle(Duration::from_secs(600)).await?;
    saga_report(name, "saga at 50 orders/s", &state.db, &trickle_ids).await?;

    // 1. Placing.
    let started = Instant::now();
    let placed: Vec<(usize, i64, Duration)> = stream::iter(0..orders)
        .map(|i| {
            let (client, base, users, options) = (&client, &base, &users, &options);
            async move {
                let (id, took) = place(
                    client,
                    base,
                    &users[i % CLIENTS],
                    options[i % options.len()],
                )
                .await;
                (i % CLIENTS, id, took)
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    report(
        name,
        "POST /api/orders",
        placed.iter().map(|p| p.2).collect(),
        started.elapsed(),
    );

    // 2. The saga behind the burst.
    state.bus.wait_idle(Duration::from_secs(600)).await?;
    let ids: Vec<i64> = placed.iter().map(|p| p.1).collect();
    saga_report(name, "saga behind the burst", &state.db, &ids).await?;

    // 3. Paying.
    let started = Instant::now();
    let paid: Vec<Duration> = stream::iter(placed)
        .map(|(user, id, _)| {
            let (client, base, users) = (&client, &base, &users);
            async move {
                let sent = Instant::now();
                let response = client
                    .post(format!("{base}/api/orders/{id}/payment"))
                    .bearer_auth(&users[user])
                    .json(&json!({}))
                    .send()
                    .await
                    .expect("payment sent");
                assert_eq!(response.status(), 200);
                sent.elapsed()
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    report(
        name,
        "POST /api/orders/{id}/payment",
        paid,
        started.elapsed(),
    );
    state.bus.wait_idle(Duration::from_secs(600)).await?;
    app.stop().await?;
    Ok(())
}

/// Places one order of one unit: its id and how long the request took.
async fn place(client: &reqwest::Client, base: &str, token: &str, option: i64) -> (i64, Duration) {
    let body = json!({ "items": [{ "productOptionId": option, "quantity": 1 }] });
    let sent = Instant::now();
    let response = client
        .post(format!("{base}/api/orders"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("order sent");
    assert_eq!(response.status(), 202);
    let order: Value = response.json().await.expect("order body");
    (order["id"].as_i64().expect("order id"), sent.elapsed())
}

/// Reports the `PENDING` → `AWAITING_PAYMENT` latency of orders `ids`, as stored, and their
/// rate from the first one's creation to the last one's pricing.
async fn saga_report(name: &str, what: &str, db: &db::Db, ids: &[i64]) -> anyhow::Result<()> {
    let list = db::id_list(ids.iter().copied());
    let timings: Vec<(DateTime<Utc>, DateTime<Utc>)> = on_db!(db, c => sqlx::query_as(&format!(
        "SELECT o.created_at, c.changed_at FROM orders o JOIN order_changes c \
         ON c.order_id = o.id AND c.version = 2 \
         WHERE o.status = 'AWAITING_PAYMENT' AND o.id IN ({list})"
    ))
    .fetch_all(c)
    .await)?;
    assert_eq!(timings.len(), ids.len(), "every order priced");
    let first = timings.iter().map(|t| t.0).min().expect("orders");
    let last = timings.iter().map(|t| t.1).max().expect("orders");
    report(
        name,
        what,
        timings
            .iter()
            .map(|(placed, priced)| (*priced - *placed).to_std().unwrap_or_default())
            .collect(),
        (last - first).to_std().unwrap_or_default(),
    );
    Ok(())
}

fn report(deployment: &str, what: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{deployment:<10} {what:<34} {:>6} in {:>6.1} s: {:>7.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let orders = support::env_number("BENCH_ORDERS", 5_000);
    let dir = tempfile::tempdir()?;
    for (name, settings) in support::deployments(dir.path()) {
        run(name, settings, orders).await?;
    }
    Ok(())
}
