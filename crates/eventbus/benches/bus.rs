//! Outbox → consumer benchmark, on every bus that is configured:
//! - db:// on SQLite (always);
//! - db:// on PostgreSQL (`STAMPEDE_TEST_DATABASE_URL`);
//! - kafka:// (`STAMPEDE_TEST_BUS_URL`, on PostgreSQL when that is set too).
//!
//! Latency: one event at a time, from the commit of the transaction that wrote it to the start
//! of its consumer's handler (p50/p99). Throughput: events written in transactions of 100 over
//! 64 keys, from the first commit until every one has been applied (the runner's dedupe record
//! and offset included). Run: `cargo bench -p eventbus --bench bus` (`BENCH_EVENTS=N` to size).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use db::{Db, Tx};
use eventbus::{BusSettings, EventBus, Handler};
use events::Envelope;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "bench";

struct Signal {
    group: String,
    seen: mpsc::UnboundedSender<Instant>,
}

#[async_trait]
impl Handler for Signal {
    fn group(&self) -> &str {
        &self.group
    }
    fn topics(&self) -> Vec<String> {
        vec![TOPIC.into()]
    }
    async fn handle(&self, _tx: &mut Tx, _event: &Envelope) -> anyhow::Result<()> {
        let _ = self.seen.send(Instant::now());
        Ok(())
    }
}

fn event(key: usize) -> Envelope {
    Envelope::raw(
        TOPIC,
        format!("key-{key}"),
        "bench".into(),
        None,
        1,
        serde_json::json!({ "k": key }),
    )
}

/// Writes `events` in one transaction; returns when it has committed.
async fn append(db: &Db, bus: &EventBus, events: Vec<Envelope>) -> anyhow::Result<Instant> {
    let mut tx = db.begin().await?;
    bus.outbox().append(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(Instant::now())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(name: &str, db: Db, bus_url: &str, events: usize) -> anyhow::Result<()> {
    db.migrate().await?;
    let settings = BusSettings {
        topic_prefix: format!("bench{}-", uuid::Uuid::now_v7().simple()),
        extra_topics: vec![TOPIC.into()],
        ..BusSettings::default()
    };
    let shutdown = CancellationToken::new();
    let bus = EventBus::connect(bus_url, db.clone(), settings).await?;
    bus.start(&shutdown).await?;
    let (seen, mut applied) = mpsc::unbounded_channel();
    bus.spawn_consumer(
        Arc::new(Signal {
            group: "bench".into(),
            seen,
        }),
        &shutdown,
    );

    // Warm-up: the consumer has joined and every connection is open.
    for _ in 0..20 {
        append(&db, &bus, vec![event(0)]).await?;
        applied.recv().await;
    }

    let samples = 300;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let committed = append(&db, &bus, vec![event(i % 64)]).await?;
        let at = applied.recv().await.expect("consumer running");
        latencies.push(at.saturating_duration_since(committed));
    }
    latencies.sort();

    let started = Instant::now();
    let writer = tokio::spawn({
        let (db, bus) = (db.clone(), bus.clone());
        async move {
            for chunk in 0..events / 100 {
                let batch = (0..100).map(|i| event((chunk * 100 + i) % 64)).collect();
                append(&db, &bus, batch).await?;
            }
            anyhow::Ok(Instant::now())
        }
    });
    for _ in 0..(events / 100) * 100 {
        applied.recv().await.expect("consumer running");
    }
    let elapsed = started.elapsed();
    let written = writer.await??.duration_since(started);
    shutdown.cancel();

    println!(
        "{name:<22} latency p50 {:>7.2} ms  p99 {:>7.2} ms  | {:>6} events in {:>6.2} s = {:>7.0} events/s (writes took {:.2} s)",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        (events / 100) * 100,
        elapsed.as_secs_f64(),
        ((events / 100) * 100) as f64 / elapsed.as_secs_f64(),
        written.as_secs_f64(),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let sqlite = || {
        let url = format!(
            "sqlite://{}/bench-{}.db",
            dir.path().display(),
            uuid::Uuid::now_v7().simple()
        );
        async move { Db::connect(&url, None).await }
    };
    let postgres = std::env::var("STAMPEDE_TEST_DATABASE_URL").ok();
    let pg = |url: String| async move {
        Db::connect(
            &url,
            Some(&format!("bench_{}", uuid::Uuid::now_v7().simple())),
        )
        .await
    };
    println!("outbox -> consumer, {events} events per throughput run, 300 latency samples");
    run("db:// on SQLite", sqlite().await?, "db://", events).await?;
    if let Some(url) = &postgres {
        run(
            "db:// on PostgreSQL",
            pg(url.clone()).await?,
            "db://",
            events,
        )
        .await?;
    }
    if let Ok(kafka) = std::env::var("STAMPEDE_TEST_BUS_URL") {
        let (name, db) = match &postgres {
            Some(url) => ("kafka:// + PostgreSQL", pg(url.clone()).await?),
            None => ("kafka:// + SQLite", sqlite().await?),
        };
        run(name, db, &kafka, events).await?;
    }
    Ok(())
}
