//! The popular-products ranking, per deployment, against the real app in this process:
//! 1. the consumer: `BENCH_SALES` (default 50,000) `product-sold` events over 100 products
//!    written to the outbox in transactions of 1,000, until the ranking consumer has counted
//!    them all (outbox → relay → bus → Redis or memory): events/s, with the counts checked;
//! 2. `GET /api/products/popular?days=3&limit=5`, `BENCH_REQUESTS` (default 300,000) times
//!    over 32 keep-alive connections (the answer is kept for a second, so this is the cached
//!    path): requests/s and latency, beside `GET /health/live` fired the same way as the
//!    ceiling.
//!
//! Embedded always; production (Kafka bus) when the `STAMPEDE_TEST_*` URLs are set.
//! Run: `cargo bench -p server --bench ranking`.

use std::time::{Duration, Instant};

use catalog::{NewOption, NewProduct};
use chrono::Utc;
use events::{order::ProductSold, Envelope};
use loadkit::batch::{connect, fire, get};
use server::Settings;

mod support;

const PRODUCTS: usize = 100;
const CONNECTIONS: usize = 32;

async fn run(name: &str, settings: Settings, sales: usize, requests: usize) -> anyhow::Result<()> {
    let app = support::start(settings).await?;
    let address = app.address;
    let state = app.state.clone();

    let mut products = Vec::with_capacity(PRODUCTS);
    for n in 0..PRODUCTS {
        let product = catalog::product::create(
            &state.catalog,
            NewProduct {
                name: format!("product {n}"),
                category: "shoes".into(),
                description: "shoes for benchmarks".into(),
                options: vec![NewOption {
                    name: "one size".into(),
                    price: 1_000,
                    stock: 1_000,
                }],
            },
        )
        .await?;
        products.push((product.id, product.options[0].id));
    }

    // 1. The consumer. Product n sells n + 1 units per sale, one sale in PRODUCTS per product.
    let started = Instant::now();
    let now = Utc::now();
    let mut expected = vec![0i64; PRODUCTS];
    for first in (0..sales).step_by(1_000) {
        let events: Vec<Envelope> = (first..sales.min(first + 1_000))
            .map(|n| {
                let (product, option) = products[n % PRODUCTS];
                expected[n % PRODUCTS] += (n % PRODUCTS) as i64 + 1;
                let order = n as i64 + 1;
                Envelope::new(&ProductSold {
                    order_id: order,
                    product_option_id: option,
                    product_id: product,
                    quantity: (n % PRODUCTS) as i64 + 1,
                    sold_at: now,
                })
            })
            .collect();
        let mut tx = state.db.begin().await?;
        state.bus.outbox().append(&mut tx, &events).await?;
        tx.commit().await?;
    }
    state.bus.wait_idle(Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    println!(
        "{name:<44} {sales} product-sold counted in {:.1} s: {:>7.0} events/s",
        elapsed.as_secs_f64(),
        sales as f64 / elapsed.as_secs_f64()
    );
    let counted = ranking::popular::popular(&state.ranking, 1, PRODUCTS as i64).await?;
    for sold in &counted {
        let n = products
            .iter()
            .position(|p| p.0 == sold.product_id)
            .expect("a bench product");
        assert_eq!(
            sold.sold_quantity, expected[n],
            "product {n} counted once per sale"
        );
    }
    assert_eq!(counted.len(), PRODUCTS.min(sales), "every product counted");

    // 2. Reads.
    let connections = connect(address, CONNECTIONS).await?;
    let ceiling = vec![get("/health/live"); requests];
    let (connections, _) = fire(
        &format!("{name}: GET /health/live (ceiling)"),
        connections,
        ceiling,
    )
    .await?;
    let reads = vec![get("/api/products/popular?days=3&limit=5"); requests];
    let (_, answers) = fire(
        &format!("{name}: GET /api/products/popular"),
        connections,
        reads,
    )
    .await?;
    assert_eq!(answers.get(&200), Some(&requests), "every read answered");
    app.stop().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sales = support::env_number("BENCH_SALES", 50_000);
    let requests = support::env_number("BENCH_REQUESTS", 300_000);
    let dir = tempfile::tempdir()?;
    for (name, settings) in support::deployments(dir.path()) {
        run(name, settings, sales, requests).await?;
    }
    Ok(())
}
