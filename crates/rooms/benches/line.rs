//! What a line of a million costs in one process: joins per second, memory per place, and a
//! position at the back of the line; then admissions at a steady rate. With
//! `STAMPEDE_TEST_CACHE_URL` set, the same million in Redis (production): joins per second at
//! depth, Redis memory per place, a place at the back read as `GET` reads it, and one tick's
//! read of the places an instance's streams follow. Prints figures (no assertions):
//! `cargo bench -p rooms --bench line` (`ROOM_PLACES` to change the million).

use std::time::Instant;

use chrono::{Duration, Utc};
use rooms::{line::Line, order::Seed, Schedule};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    in_process();
    if let Ok(url) = std::env::var("STAMPEDE_TEST_CACHE_URL") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(in_redis(&url));
    }
}

fn places_wanted() -> i64 {
    std::env::var("ROOM_PLACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn in_process() {
    let places = places_wanted();
    let before = rss();
    let mut line = Line::new(Seed([42; 32]));
    let now = Utc::now();
    let early = places / 10;
    let started = Instant::now();
    for user in 0..early {
        line.join(user, now);
    }
    line.open();
    for user in early..places {
        line.join(user, now);
    }
    let took = started.elapsed();
    let grown = rss().saturating_sub(before);
    println!(
        "{places} joins ({early} before opening, shuffled at opening): {:.0} joins/s; RSS +{} MB, {} bytes a place",
        places as f64 / took.as_secs_f64(),
        grown >> 20,
        grown / places as u64
    );

    let back = line
        .place_of(places - 1)
        .expect("the last joiner has a place");
    let lookups = 100_000;
    let started = Instant::now();
    let mut sum = 0;
    for _ in 0..lookups {
        sum += std::hint::black_box(&line)
            .position(std::hint::black_box(back))
            .unwrap_or(0);
    }
    let per = started.elapsed() / lookups;
    println!(
        "position at the back of the line ({}): {per:?} each",
        sum / lookups as u64
    );

    let opens = now;
    let schedule = Schedule::new(opens, 5_000);
    let started = Instant::now();
    let mut admitted = 0;
    for tick in 1..=600 {
        let now = opens + Duration::milliseconds(tick * 100);
        admitted += line
            .admit(schedule.due(now), None, now, Duration::seconds(300))
            .len();
    }
    println!(
        "60 s of ticks at 5,000/s: {admitted} admitted (expected 300,000), {:?} of work in all",
        started.elapsed()
    );
}

/// Redis's `used_memory`, in bytes.
async fn used_memory(redis: &mut cache::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(redis)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

/// The `q`th quantile of sorted `samples`.
fn quantile(samples: &[std::time::Duration], q: f64) -> std::time::Duration {
    samples[((samples.len() - 1) as f64 * q) as usize]
}

async fn in_redis(url: &str) {
    use futures::StreamExt as _;
    use rooms::store::Lines;

    let places = places_wanted();
    let prefix = format!("bench-line-{}:", std::process::id());
    let cache = cache::Cache::connect(url, &prefix)
        .await
        .expect("connecting to Redis");
    let cache::Cache::Redis(redis_cache) = &cache else {
        unreachable!("a redis:// URL")
    };
    let mut redis = redis_cache.connection();
    let lines = Lines::on(&cache);
    let (room, seed) = (1, Seed([42; 32]));
    lines.prepare(room, seed).await.expect("prepare");
    let before = used_memory(&mut redis).await;
    let now = Utc::now();
    let early = places / 10;
    let join_all = |users: std::ops::Range<i64>| {
        let lines = lines.clone();
        async move {
            futures::stream::iter(users)
                .map(|user| {
                    let lines = lines.clone();
                    async move { lines.join(room, seed, user, now).await.expect("join") }
                })
                .buffer_unordered(128)
                .count()
                .await
        }
    };
    join_all(0..early).await;
    let started = Instant::now();
    lines.open(room, seed).await.expect("open");
    println!(
        "redis: {early} places taken before opening numbered in {:?}",
        started.elapsed()
    );
    let block = (places / 10).max(1);
    let mut user = early;
    while user < places {
        let end = (user + block).min(places);
        let started = Instant::now();
        join_all(user..end).await;
        println!(
            "redis: joins {user}..{end}: {:.0} joins/s",
            (end - user) as f64 / started.elapsed().as_secs_f64()
        );
        user = end;
    }
    let grown = used_memory(&mut redis).await.saturating_sub(before);
    println!(
        "redis: {places} places: used_memory +{} MB, {} bytes a place",
        grown >> 20,
        grown / places as u64
    );

    let mut samples = Vec::new();
    for _ in 0..10_000 {
        let started = Instant::now();
        let seen = lines
            .places(room, &[places - 1], Utc::now(), true)
            .await
            .expect("places");
        samples.push(started.elapsed());
        assert!(seen[0].as_ref().is_some_and(|s| s.position.is_some()));
    }
    samples.sort();
    println!(
        "redis: a place at the back of the line, read one at a time: p50 {:?}, p99 {:?}",
        quantile(&samples, 0.5),
        quantile(&samples, 0.99)
    );
    let followed: Vec<i64> = (0..places)
        .step_by((places as usize / 18_000).max(1))
        .collect();
    for touch in [true, false] {
        let started = Instant::now();
        let seen = lines
            .places(room, &followed, Utc::now(), touch)
            .await
            .expect("places");
        println!(
            "redis: one tick's read of the {} places an instance's streams follow ({}): {:?}",
            seen.len(),
            if touch {
                "marking them seen"
            } else {
                "read only"
            },
            started.elapsed()
        );
    }

    for pass in 1..=3 {
        let started = Instant::now();
        let dropped = lines
            .abandon(room, now - chrono::Duration::seconds(60))
            .await
            .expect("abandon");
        println!(
            "redis: abandonment pass {pass} (each looks at the next slice of the line; dropped {dropped}): {:?}",
            started.elapsed()
        );
    }

    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut redis)
                .await
                .expect("UNLINK");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}
