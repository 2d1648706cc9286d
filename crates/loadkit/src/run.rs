//! A run: prepare (note the state the verdict compares against, make the flash sale's coupon),
//! drive the scenario for a duration under a closed or open model with a live progress line,
//! then gather every virtual user's measurements. A run spread over several processes
//! (`crate::workers`) prepares once and drives one [`Part`] of the virtual users in each.

use std::{
    io::IsTerminal as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::json;

use crate::{
    http::{Conn, Target},
    scenario::{room::RoomRun, RunLog, Scenario, Shared, Vu},
    stats::{histogram, Recorder, Second, Window},
    Seeded,
};

/// How a run is driven.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    pub duration: Duration,
    /// Virtual users (closed model), or the most iterations in flight at once (open model).
    pub vus: usize,
    /// Iterations started per second (open model); `None`: closed model.
    pub rate: Option<f64>,
    pub think: Duration,
    /// The coupon of `flash-sale`; `None`: a new one of `coupon_quantity` units is created.
    pub coupon: Option<i64>,
    pub coupon_quantity: i64,
    /// `waiting-room`: admissions a second, and how long after the start the room opens.
    pub admit_rate: i64,
    pub opens_in: Duration,
    /// Print the live progress line.
    pub progress: bool,
}

/// What a run measured.
pub struct Outcome {
    pub plan: Plan,
    pub elapsed: Duration,
    pub recorder: Recorder,
    pub timeline: Vec<Second>,
    /// Open model: how late iterations started (µs), for those that had to wait for a free
    /// virtual user.
    pub late: Histogram<u64>,
    pub log: RunLog,
}

impl Outcome {
    pub fn requests_per_second(&self) -> f64 {
        self.recorder.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Which virtual users one process drives: those whose index is `index` modulo `of` (and,
/// in the open model, the iterations scheduled in those turns).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Part {
    pub index: usize,
    pub of: usize,
}

impl Part {
    pub const WHOLE: Part = Part { index: 0, of: 1 };

    fn owns(self, vu: usize) -> bool {
        vu % self.of == self.index
    }
}

/// What preparing a run made: the state before it, and its room.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    pub log: RunLog,
    pub room: Option<RoomRun>,
}

/// Runs `plan` against `target` with the accounts of `seed`, in this process.
pub async fn run(target: Arc<Target>, seed: Seeded, mut plan: Plan) -> anyhow::Result<Outcome> {
    let prepared = prepare(&target, &seed, &mut plan).await?;
    let driving = Driving {
        part: Part::WHOLE,
        start: Instant::now(),
        close_room: true,
    };
    drive(target, seed, plan, prepared, driving).await
}

/// Notes the state the verdict compares against and makes what the scenario needs (the flash
/// sale's coupon, written into `plan`; the room).
pub async fn prepare(
    target: &Arc<Target>,
    seed: &Seeded,
    plan: &mut Plan,
) -> anyhow::Result<Prepared> {
    let mut log = RunLog::default();
    let mut conn = Conn::new(target.clone());
    if plan.scenario != Scenario::Live {
        note_stock(&mut conn, seed, &mut log).await?;
    }
    if matches!(plan.scenario, Scenario::FlashSale) {
        let coupon = match plan.coupon {
            Some(coupon) => coupon,
            None => create_coupon(&mut conn, seed, plan.coupon_quantity).await?,
        };
        let detail = conn
            .send(Method::GET, &format!("/api/coupons/{coupon}"), None, None)
            .await?
            .json();
        let issued = detail["totalQuantity"].as_i64().unwrap_or(0)
            - detail["remainingQuantity"].as_i64().unwrap_or(0);
        log.coupons_issued_before.insert(coupon, issued);
        plan.coupon = Some(coupon);
    }
    let mut room = None;
    if matches!(
        plan.scenario,
        Scenario::WaitingRoom | Scenario::RoomJoin | Scenario::Crowd
    ) {
        // Joins alone are measured on a line that does not open during the run.
        let opens_in = match plan.scenario {
            Scenario::RoomJoin => plan.duration + Duration::from_secs(3600),
            _ => plan.opens_in,
        };
        let coupon = create_coupon(&mut conn, seed, plan.coupon_quantity).await?;
        let made =
            crate::scenario::room::prepare(&mut conn, seed, coupon, plan.admit_rate, opens_in)
                .await?;
        if plan.scenario != Scenario::RoomJoin {
            log.coupons_issued_before.insert(made.coupon_id, 0);
            log.room.room = Some(made.clone());
        }
        room = Some(made);
    }
    Ok(Prepared { log, room })
}

/// How one process drives its part of a run.
pub struct Driving {
    pub part: Part,
    /// When the run starts (every process of a run starts at the same moment).
    pub start: Instant,
    /// Close the room at the end (one process of a run does).
    pub close_room: bool,
}

/// Drives `driving.part` of `plan`'s virtual users from `driving.start`.
pub async fn drive(
    target: Arc<Target>,
    seed: Seeded,
    plan: Plan,
    prepared: Prepared,
    driving: Driving,
) -> anyhow::Result<Outcome> {
    let Prepared { log, room } = prepared;
    let Driving {
        part,
        start,
        close_room,
    } = driving;
    let vus = plan.vus.max(1);
    let shared = Arc::new(Shared {
        target,
        seed,
        coupon: plan.coupon,
        room: room.clone(),
        duration: plan.duration,
        think: plan.think,
        vus,
        streams_held: AtomicU64::new(0),
        window: Mutex::new(Window::default()),
        log: Mutex::new(log),
    });

    tokio::time::sleep_until(start.into()).await;
    let started = start;
    let deadline = started + plan.duration;
    let ticker = tokio::spawn(progress(shared.clone(), started, deadline, plan.progress));
    // The room closes when the run ends, and with it every stream still waiting.
    let closer = room
        .filter(|_| close_room)
        .map(|room| close_at(&shared.target, &shared.seed, room, deadline));
    let owned = (0..vus).filter(|&vu| part.owns(vu)).count();
    let probe = (plan.scenario == Scenario::Crowd && part.index == 0)
        .then(|| tokio::spawn(probe_while_held(shared.clone(), owned as u64, deadline)));
    let (mut recorder, late) = match plan.rate {
        None => (
            closed(&shared, plan.scenario, part, deadline).await,
            histogram(),
        ),
        Some(rate) => open(&shared, plan.scenario, part, rate, deadline).await,
    };
    let elapsed = started.elapsed();
    if let Some(probe) = probe {
        recorder.merge(&probe.await.context("probing /health/live")?);
    }
    if let Some(closer) = closer {
        closer.await.context("closing the room")??;
    }
    let timeline = ticker.await.context("progress")?;
    let log = shared.log.lock().expect("run log").clone();
    Ok(Outcome {
        plan,
        elapsed,
        recorder,
        timeline,
        late,
        log,
    })
}

/// Closes `room` at `deadline`, and with it every stream still waiting.
pub fn close_at(
    target: &Arc<Target>,
    seed: &Seeded,
    room: RoomRun,
    deadline: Instant,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let (target, seed) = (target.clone(), seed.clone());
    tokio::spawn(async move {
        tokio::time::sleep_until(deadline.into()).await;
        crate::scenario::room::close(&mut Conn::new(target), &seed, &room).await
    })
}

/// Closed model: `part` of the users, each starting its next iteration when the last one
/// ended.
async fn closed(
    shared: &Arc<Shared>,
    scenario: Scenario,
    part: Part,
    deadline: Instant,
) -> Recorder {
    let users: Vec<_> = (0..shared.vus)
        .filter(|&index| part.owns(index))
        .map(|index| {
            let mut vu = Vu::new(index, shared.clone());
            // With a think time, users arrive spread over the first pause, as people do, not
            // all in the same instant (and then in step with each other for the whole run).
            let arrival = shared.think.mul_f64(index as f64 / shared.vus as f64);
            tokio::spawn(async move {
                tokio::time::sleep(arrival).await;
                while Instant::now() < deadline {
                    vu.iterate(scenario).await;
                    if scenario.once_per_user() {
                        break;
                    }
                }
                vu.recorder
            })
        })
        .collect();
    let mut recorder = Recorder::default();
    for user in users {
        if let Ok(measured) = user.await {
            recorder.merge(&measured);
        }
    }
    recorder
}

/// Open model: an iteration starts every `1/rate` s on a fixed schedule, on whichever of the
/// users is free; one that must wait for a free user starts late, and is counted so. `part`
/// takes its users and every `part.of`th turn of the schedule.
async fn open(
    shared: &Arc<Shared>,
    scenario: Scenario,
    part: Part,
    rate: f64,
    deadline: Instant,
) -> (Recorder, Histogram<u64>) {
    let vus = shared.vus;
    let owned: Vec<usize> = (0..vus).filter(|&index| part.owns(index)).collect();
    let (free_tx, mut free) = tokio::sync::mpsc::channel(owned.len().max(1));
    for &index in &owned {
        let _ = free_tx.try_send(Vu::new(index, shared.clone()));
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let mut late = histogram();
    for k in (part.index..).step_by(part.of) {
        let due = start + interval.mul_f64(k as f64);
        if due >= deadline || scenario.once_per_user() && k >= vus {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let Some(mut vu) = free.recv().await else {
            break;
        };
        let lateness = due.elapsed();
        if lateness > Duration::from_millis(1) {
            let _ = late.record((lateness.as_micros() as u64).max(1));
        }
        let back = free_tx.clone();
        tokio::spawn(async move {
            vu.iterate(scenario).await;
            let _ = back.send(vu).await;
        });
    }
    drop(free_tx);
    let mut recorder = Recorder::default();
    for _ in 0..owned.len() {
        match free.recv().await {
            Some(vu) => recorder.merge(&vu.recorder),
            None => break,
        }
    }
    (recorder, late)
}

/// Closes the shared window every second until `deadline`, printing a progress line.
async fn progress(
    shared: Arc<Shared>,
    started: Instant,
    deadline: Instant,
    print: bool,
) -> Vec<Second> {
    let terminal = std::io::stderr().is_terminal();
    let mut timeline = Vec::new();
    let mut t = 0;
    while Instant::now() < deadline {
        t += 1;
        tokio::time::sleep_until((started + Duration::from_secs(t)).min(deadline).into()).await;
        let mut second = shared.window.lock().expect("window").close(t);
        second.streams = shared.streams_held.load(Ordering::Relaxed);
        if print && (terminal || t % 5 == 0) {
            let mut line = format!(
                "{:>5}s {:>9.0} req/s {:>7} errors  p50 {:>7.2} ms  p99 {:>8.2} ms",
                t, second.requests as f64, second.errors, second.p50_ms, second.p99_ms
            );
            if second.streams > 0 {
                line.push_str(&format!("  {:>6} streams", second.streams));
            }
            if terminal {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
        timeline.push(second);
    }
    if print && terminal {
        eprintln!();
    }
    timeline
}

/// `crowd`: asks `/health/live` ten times a second while any stream is held (until
/// `deadline`), on a connection of its own: how the server answers while the crowd opens its
/// streams (`health.live.opening`), while it holds them all (the `people` of this process)
/// before the room opens (`health.live.held`), and once the room admits
/// (`health.live.admitting`).
async fn probe_while_held(shared: Arc<Shared>, people: u64, deadline: Instant) -> Recorder {
    let mut conn = Conn::new(shared.target.clone());
    let mut recorder = Recorder::default();
    let opens_at = shared.room.as_ref().map(|room| room.opens_at);
    let mut seen_streams = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = shared.streams_held.load(Ordering::Relaxed);
        seen_streams |= held > 0;
        if held == 0 {
            if seen_streams {
                break;
            }
            continue;
        }
        let step = match opens_at {
            Some(at) if chrono::Utc::now() >= at => "health.live.admitting",
            _ if held < people => "health.live.opening",
            _ => "health.live.held",
        };
        let started = Instant::now();
        let answer = match conn.send(Method::GET, "/health/live", None, None).await {
            Ok(reply) if reply.status == 200 => crate::stats::Answer::Expected {
                status: 200,
                code: None,
            },
            Ok(reply) => crate::stats::Answer::Error {
                label: reply.status.to_string(),
            },
            Err(error) => crate::stats::Answer::Error {
                label: format!("no answer ({error})"),
            },
        };
        recorder.record(step, started.elapsed(), answer);
    }
    recorder
}

/// Notes every seeded option's stock before the run.
async fn note_stock(conn: &mut Conn, seed: &Seeded, log: &mut RunLog) -> anyhow::Result<()> {
    for product in &seed.products {
        let reply = conn
            .send(Method::GET, &format!("/api/products/{product}"), None, None)
            .await?;
        anyhow::ensure!(
            reply.status == 200,
            "product {product}: status {}",
            reply.status
        );
        for option in reply.json()["options"].as_array().into_iter().flatten() {
            if let (Some(id), Some(stock)) = (option["id"].as_i64(), option["stock"].as_i64()) {
                log.stock_before.insert(id, stock);
            }
        }
    }
    Ok(())
}

/// Creates the flash sale's coupon as the seeded admin; its id.
async fn create_coupon(conn: &mut Conn, seed: &Seeded, quantity: i64) -> anyhow::Result<i64> {
    let body = json!({
        "name": "load flash sale",
        "discountType": "FIXED",
        "discountValue": 1000,
        "totalQuantity": quantity,
        "expiresAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let reply = conn
        .send(
            Method::POST,
            "/api/admin/coupons",
            Some(&seed.admin.token),
            Some(Bytes::from(body.to_string())),
        )
        .await?;
    anyhow::ensure!(
        reply.status == 201,
        "creating the flash sale's coupon: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_i64().context("no coupon id")
}
