//! `--processes N`: one run over N processes of this binary, for crowds past what one process
//! may hold (a connection, so a file descriptor, per virtual user). The parent prepares the
//! run once, writes each worker its [`Part`] of the virtual users, starts them all at the same
//! moment, closes the room at the end, and merges what they measured: each step's latency
//! histogram and answers exactly, the run logs whole (so the verdict sees every order, task
//! and place), and each second's counts summed. A second's percentiles cannot be summed: the
//! merged second shows the workers' highest p99 and their p50 weighted by count.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::Utc;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    http::Target,
    run::{close_at, drive, prepare, Driving, Outcome, Part, Plan, Prepared},
    scenario::RunLog,
    stats::{histogram, Recorder, Second, Step},
    Seeded,
};

/// How long the parent gives its workers to start before the run begins.
const START_IN: Duration = Duration::from_secs(2);

/// What one worker process is asked to do.
#[derive(Serialize, Deserialize)]
pub struct WorkerPlan {
    pub base_url: String,
    pub sources: Vec<IpAddr>,
    pub tokens: PathBuf,
    pub plan: Plan,
    pub prepared: Prepared,
    pub part: Part,
    /// When every worker starts, in ms since the epoch.
    pub start_at_ms: i64,
    /// Where it writes what it measured.
    pub out: PathBuf,
}

/// What a worker measured, as it hands it to the parent.
#[derive(Serialize, Deserialize)]
struct Measured {
    elapsed: Duration,
    steps: BTreeMap<String, MeasuredStep>,
    timeline: Vec<Second>,
    late: Vec<(u64, u64)>,
    log: RunLog,
}

#[derive(Serialize, Deserialize)]
struct MeasuredStep {
    /// Each recorded latency (µs) with its count.
    latency: Vec<(u64, u64)>,
    errors: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
}

fn counts(histogram: &Histogram<u64>) -> Vec<(u64, u64)> {
    histogram
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

fn histogram_of(counts: &[(u64, u64)]) -> Histogram<u64> {
    let mut histogram = histogram();
    for &(value, count) in counts {
        let _ = histogram.record_n(value, count);
    }
    histogram
}

/// The moment `at_ms` (ms since the epoch) on this process's monotonic clock.
fn instant_at(at_ms: i64) -> Instant {
    let wait = at_ms - Utc::now().timestamp_millis();
    Instant::now() + Duration::from_millis(wait.max(0) as u64)
}

/// Runs `plan` over `processes` worker processes of this binary.
pub async fn spread(
    base_url: &str,
    sources: &[IpAddr],
    tokens: &Path,
    target: Arc<Target>,
    seed: &Seeded,
    mut plan: Plan,
    processes: usize,
) -> anyhow::Result<Outcome> {
    // The room opens `opens_in` after the run starts, which is `START_IN` after preparing.
    let mut preparing = Plan {
        opens_in: plan.opens_in + START_IN,
        ..plan.clone()
    };
    let prepared = prepare(&target, seed, &mut preparing).await?;
    plan.coupon = preparing.coupon;
    let dir = std::env::temp_dir().join(format!("stampede-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let start_at_ms = Utc::now().timestamp_millis() + START_IN.as_millis() as i64;
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut workers = Vec::with_capacity(processes);
    for index in 0..processes {
        let worker = WorkerPlan {
            base_url: base_url.to_owned(),
            sources: sources.to_vec(),
            tokens: tokens.to_owned(),
            plan: Plan {
                progress: false,
                ..plan.clone()
            },
            prepared: prepared.clone(),
            part: Part {
                index,
                of: processes,
            },
            start_at_ms,
            out: dir.join(format!("measured-{index}.json")),
        };
        let path = dir.join(format!("plan-{index}.json"));
        std::fs::write(&path, serde_json::to_vec(&worker)?)?;
        let child = std::process::Command::new(&exe)
            .arg("load")
            .arg("--worker-plan")
            .arg(&path)
            .spawn()
            .with_context(|| format!("starting worker {index}"))?;
        workers.push((index, child, worker.out));
    }
    eprintln!(
        "{} virtual users over {processes} processes",
        plan.vus.max(1)
    );
    let start = instant_at(start_at_ms);
    let deadline = start + plan.duration;
    let closer = (prepared.room.clone()).map(|room| close_at(&target, seed, room, deadline));
    let mut outcome = Outcome {
        plan,
        elapsed: Duration::ZERO,
        recorder: Recorder::default(),
        timeline: Vec::new(),
        late: histogram(),
        log: prepared.log,
    };
    for (index, mut child, out) in workers {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await?
            .with_context(|| format!("waiting for worker {index}"))?;
        anyhow::ensure!(status.success(), "worker {index} failed ({status})");
        let measured: Measured = serde_json::from_slice(
            &std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?,
        )?;
        merge(&mut outcome, measured);
    }
    if let Some(closer) = closer {
        closer.await.context("closing the room")??;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(outcome)
}

/// `stampede load --worker-plan FILE`: drives one part of a spread run.
pub async fn work(path: &Path) -> anyhow::Result<()> {
    let worker: WorkerPlan = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let target = Target::parse_from(&worker.base_url, worker.sources)?;
    let seed = Seeded::read(&worker.tokens)?;
    let driving = Driving {
        part: worker.part,
        start: instant_at(worker.start_at_ms),
        close_room: false,
    };
    let outcome = drive(target, seed, worker.plan, worker.prepared, driving).await?;
    let measured = Measured {
        elapsed: outcome.elapsed,
        steps: outcome
            .recorder
            .steps
            .iter()
            .map(|(name, step)| {
                let step = MeasuredStep {
                    latency: counts(&step.latency),
                    errors: step.errors.clone(),
                    outcomes: step.outcomes.clone(),
                };
                ((*name).to_owned(), step)
            })
            .collect(),
        timeline: outcome.timeline,
        late: counts(&outcome.late),
        log: outcome.log,
    };
    std::fs::write(&worker.out, serde_json::to_vec(&measured)?)
        .with_context(|| format!("writing {}", worker.out.display()))
}

/// Adds one worker's measurements to the run's.
fn merge(outcome: &mut Outcome, measured: Measured) {
    outcome.elapsed = outcome.elapsed.max(measured.elapsed);
    let mut recorder = Recorder::default();
    for (name, step) in measured.steps {
        // Step names are `'static` in a recorder; a run has a few dozen at most.
        let name: &'static str = Box::leak(name.into_boxed_str());
        let step = Step {
            latency: histogram_of(&step.latency),
            errors: step.errors,
            outcomes: step.outcomes,
        };
        recorder.steps.insert(name, step);
    }
    outcome.recorder.merge(&recorder);
    let _ = outcome.late.add(histogram_of(&measured.late));
    for second in measured.timeline {
        match outcome.timeline.iter_mut().find(|s| s.t == second.t) {
            Some(into) => add_second(into, second),
            None => outcome.timeline.push(second),
        }
    }
    outcome.timeline.sort_by_key(|s| s.t);
    let log = &mut outcome.log;
    log.orders.extend(measured.log.orders);
    log.coupon_tasks.extend(measured.log.coupon_tasks);
    log.room.places.extend(measured.log.room.places);
    log.room.unadmitted_asked += measured.log.room.unadmitted_asked;
    log.room.unadmitted_accepted += measured.log.room.unadmitted_accepted;
}

/// Adds `other` (the same second of another worker) to `into`.
fn add_second(into: &mut Second, other: Second) {
    let weighted = |a: f64, n: u64, b: f64, m: u64| {
        if n + m == 0 {
            0.0
        } else {
            (a * n as f64 + b * m as f64) / (n + m) as f64
        }
    };
    into.p50_ms = weighted(into.p50_ms, into.requests, other.p50_ms, other.requests);
    into.p99_ms = into.p99_ms.max(other.p99_ms);
    into.requests += other.requests;
    into.errors += other.errors;
    into.streams += other.streams;
    for (step, theirs) in other.steps {
        match into.steps.get_mut(&step) {
            Some(ours) => {
                ours.p50_ms = weighted(ours.p50_ms, ours.count, theirs.p50_ms, theirs.count);
                ours.p99_ms = ours.p99_ms.max(theirs.p99_ms);
                ours.count += theirs.count;
            }
            None => {
                into.steps.insert(step, theirs);
            }
        }
    }
    for (kind, count) in other.answers {
        *into.answers.entry(kind).or_default() += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_trip_between_processes() {
        let mut latency = histogram();
        for micros in [1, 250, 250, 1_000, 37_000, 5_000_000] {
            latency.record(micros).unwrap();
        }
        let back = histogram_of(&counts(&latency));
        assert_eq!(back.len(), latency.len());
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(back.value_at_quantile(q), latency.value_at_quantile(q));
        }
    }

    #[test]
    fn seconds_of_two_workers_add_up() {
        let second = |requests, p50, p99| Second {
            t: 3,
            requests,
            errors: 1,
            p50_ms: p50,
            p99_ms: p99,
            streams: 10,
            steps: BTreeMap::new(),
            answers: BTreeMap::from([("2xx".to_owned(), requests)]),
        };
        let mut into = second(100, 2.0, 9.0);
        add_second(&mut into, second(300, 4.0, 7.0));
        assert_eq!((into.requests, into.errors, into.streams), (400, 2, 20));
        assert_eq!((into.p50_ms, into.p99_ms), (3.5, 9.0));
        assert_eq!(into.answers["2xx"], 400);
    }
}
