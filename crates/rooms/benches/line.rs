//! What a line of a million costs in one process: joins per second, memory per place, and a
//! position at the back of the line; then admissions at a steady rate. Prints figures (no
//! assertions): `cargo bench -p rooms --bench line` (`ROOM_PLACES` to change the million).

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
    let places: i64 = std::env::var("ROOM_PLACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
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
