//! The admission rate as the room tick keeps it: a line long enough never to run empty, the
//! real tick loop (`rooms::tick::run`, ten ticks a second) for 60 s at 50, 500 and 5,000 a
//! second, and the admissions counted by the line, over the whole run and over each 10 s.
//! Prints figures (no assertions): `cargo bench -p rooms --bench admission`, in process; with
//! `STAMPEDE_TEST_DATABASE_URL` and `STAMPEDE_TEST_CACHE_URL` set, on PostgreSQL and Redis.
//! `ROOM_SECONDS` (60) and `ROOM_RATES` ("50 500 5000") change the runs.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use rooms::{admin, definition::change::RoomChange, NewRoom, PlaceKey, RoomConfig, Rooms, Sale};
use tokio_util::sync::CancellationToken;

/// Sales that exist and never sell out.
struct Endless;

#[async_trait::async_trait]
impl rooms::Sales for Endless {
    async fn exists(&self, _: Sale) -> anyhow::Result<bool> {
        Ok(true)
    }
    async fn sold_out(&self, _: Sale) -> anyhow::Result<bool> {
        Ok(false)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let production = std::env::var_os("STAMPEDE_TEST_CACHE_URL").is_some();
    let seconds: u64 = std::env::var("ROOM_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let rates: Vec<u64> = std::env::var("ROOM_RATES")
        .unwrap_or_else(|_| "50 500 5000".into())
        .split_whitespace()
        .filter_map(|rate| rate.parse().ok())
        .collect();
    let context = testkit::context(if production {
        testkit::Adapters::Production
    } else {
        testkit::Adapters::Embedded
    })
    .await
    .expect("the services are set");
    let rooms = Rooms::new(
        context.db.clone(),
        context.cache.clone(),
        PlaceKey::derive(b"an admission bench's key, not a secret"),
        // Nobody here follows a place: none is dropped as abandoned during the run.
        RoomConfig {
            abandon_secs: 86_400,
            ..RoomConfig::default()
        },
        Arc::new(Endless),
    );
    let stop = CancellationToken::new();
    tokio::spawn(rooms::tick::run(rooms.clone(), stop.clone()));
    println!(
        "{} deployment, {seconds} s a rate",
        if production {
            "production (PostgreSQL, Redis)"
        } else {
            "embedded (SQLite, in process)"
        }
    );
    for (i, rate) in rates.into_iter().enumerate() {
        let opens = Utc::now();
        let room = admin::create(
            &rooms,
            &NewRoom {
                name: format!("bench {rate}/s"),
                coupon_id: Some(i as i64 + 1),
                product_id: None,
                opens_at: opens,
                admit_per_second: rate as i64,
                max_active: None,
                admission_secs: Some(3_600),
            },
            Utc::now(),
        )
        .await
        .expect("a room");
        // Paused while more people join than the run admits; the clock starts at resuming.
        let pause = |paused| RoomChange {
            paused: Some(paused),
            ..RoomChange::default()
        };
        admin::change(&rooms, room.id, &pause(true), Utc::now())
            .await
            .expect("paused");
        let people = rate * (seconds + 5);
        for user in 0..people as i64 {
            rooms
                .lines()
                .join(room.id, room.seed, user, Utc::now())
                .await
                .expect("joined");
        }
        let resumed = Utc::now();
        admin::change(&rooms, room.id, &pause(false), resumed)
            .await
            .expect("resumed");
        let at = |secs: f64| resumed + chrono::Duration::milliseconds((secs * 1000.0) as i64);
        let mut samples = Vec::new();
        for k in 0..=seconds / 10 {
            let when = at(1.0 + 10.0 * k as f64);
            let wait = (when - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            let stats = rooms.lines().stats(room.id).await.expect("stats");
            samples.push((Utc::now(), stats.admitted));
        }
        let (first, last) = (samples[0], samples[samples.len() - 1]);
        let secs = (last.0 - first.0).num_milliseconds() as f64 / 1000.0;
        let made = (last.1 - first.1) as f64;
        let worst = samples
            .windows(2)
            .map(|w| {
                let span = (w[1].0 - w[0].0).num_milliseconds() as f64 / 1000.0;
                ((w[1].1 - w[0].1) as f64 / span - rate as f64) / rate as f64
            })
            .fold(0.0f64, |worst, error| {
                if error.abs() > worst.abs() {
                    error
                } else {
                    worst
                }
            });
        println!(
            "{rate:>5}/s: {made:.0} admitted in {secs:.1} s = {:.1}/s ({:+.2}%); worst 10 s window {:+.2}%",
            made / secs,
            (made / secs - rate as f64) / rate as f64 * 100.0,
            worst * 100.0
        );
        admin::close(
            &rooms,
            room.id,
            rooms::ClosedReason::ClosedByAdmin,
            Utc::now(),
        )
        .await
        .expect("closed");
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
}
