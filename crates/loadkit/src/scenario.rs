//! What a virtual user does in one iteration of each scenario, step by step. Each iteration
//! acts as the next seeded user in turn, so per-user limits see a crowd, not one user.

use std::{
    collections::BTreeMap,
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    http::{follow_events, Conn, Reply, Target},
    stats::{Answer, Recorder, Window},
    Seeded, SeededUser,
};

pub mod room;

pub use room::{RoomLog, RoomRun, TakenPlace};

/// The scenarios `stampede load --scenario` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Popular products → product → charge → place an order → its stream until
    /// AWAITING_PAYMENT → pay → read the order.
    Journey,
    /// Every user asks for one coupon; one that is accepted follows its task's stream to the
    /// result.
    FlashSale,
    /// Point charges.
    Charge,
    /// Product list, product detail, popular products.
    Browse,
    /// Six browses, three journeys and one charge in every ten iterations.
    Mixed,
    /// `GET /health/live` only: the generator's own ceiling.
    Live,
    /// A coupon drop behind a waiting room: join the line (some before it opens), follow the
    /// place's stream, and once admitted ask for the coupon; the run closes the room at its end.
    WaitingRoom,
    /// Join the line of a room the run creates (opening after the run): join throughput.
    RoomJoin,
    /// A sale's opening crowd: `--vus` people (arriving at `--rate` a second) join a room
    /// that opens after `--opens-in`, each holding only its place's stream until admitted:
    /// streams opened and refused, `/health/live` while they are held, and how long after
    /// the opening and after each admission the event arrives.
    Crowd,
}

impl Scenario {
    /// Whether each virtual user makes one iteration (a person), not as many as fit.
    pub fn once_per_user(self) -> bool {
        self == Self::Crowd
    }
}

/// How long a stream may take to bring what a step waits for.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// An order the run placed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub id: i64,
    /// Index of its user in the seed file.
    pub user: usize,
    pub option_id: i64,
    pub quantity: i64,
}

/// A coupon request the run got 202 for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedTask {
    pub task_id: String,
    pub coupon_id: i64,
    pub user: usize,
}

/// What the verdict needs to know of a run: what it changed and what was there before.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunLog {
    pub orders: Vec<PlacedOrder>,
    pub coupon_tasks: Vec<AcceptedTask>,
    /// Each coupon the run asked for, and how many units were issued before it.
    pub coupons_issued_before: BTreeMap<i64, i64>,
    /// Each seeded option's stock before the run.
    pub stock_before: BTreeMap<i64, i64>,
    /// `waiting-room`: the room and the places taken.
    #[serde(default)]
    pub room: RoomLog,
}

/// What every virtual user of a run shares.
pub struct Shared {
    pub target: Arc<Target>,
    pub seed: Seeded,
    /// The coupon of `flash-sale`.
    pub coupon: Option<i64>,
    /// Pause after each iteration.
    pub think: Duration,
    /// How long the run lasts.
    pub duration: Duration,
    /// The room of `waiting-room`.
    pub room: Option<RoomRun>,
    pub vus: usize,
    /// Streams open now (`waiting-room`, `crowd`).
    pub streams_held: AtomicU64,
    pub window: Mutex<Window>,
    pub log: Mutex<RunLog>,
}

/// A virtual user: its connection and its own measurements.
pub struct Vu {
    pub index: usize,
    iteration: usize,
    conn: Conn,
    pub recorder: Recorder,
    shared: Arc<Shared>,
}

impl Vu {
    pub fn new(index: usize, shared: Arc<Shared>) -> Self {
        Self {
            index,
            iteration: 0,
            conn: Conn::new(shared.target.clone()),
            recorder: Recorder::default(),
            shared,
        }
    }

    /// The seeded user this iteration acts as, and its index.
    fn user(&self) -> (usize, SeededUser) {
        let users = &self.shared.seed.users;
        let at = (self.index + self.iteration * self.shared.vus) % users.len();
        (at, users[at].clone())
    }

    pub async fn iterate(&mut self, scenario: Scenario) {
        match scenario {
            Scenario::Journey => self.journey().await,
            Scenario::FlashSale => self.flash_sale().await,
            Scenario::Charge => self.charge().await,
            Scenario::WaitingRoom => self.waiting_room().await,
            Scenario::RoomJoin => self.room_join().await,
            Scenario::Crowd => self.crowd().await,
            Scenario::Browse => self.browse().await,
            Scenario::Live => {
                self.call(
                    "health.live",
                    Method::GET,
                    "/health/live",
                    None,
                    None,
                    &[200],
                )
                .await;
            }
            Scenario::Mixed => match self.iteration % 10 {
                0..=5 => self.browse().await,
                6..=8 => self.journey().await,
                _ => self.charge().await,
            },
        }
        self.iteration += 1;
        if !self.shared.think.is_zero() {
            tokio::time::sleep(self.shared.think).await;
        }
    }

    /// One request, measured as `step`: an answer whose status is in `expected` is counted by
    /// its status and code, any other (or none) as an error. The answer, if one came.
    async fn call(
        &mut self,
        step: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expected: &[u16],
    ) -> Option<Reply> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let started = Instant::now();
        let result = self.conn.send(method, path, token, body).await;
        let elapsed = started.elapsed();
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => {
                let label = format!("no answer ({})", short(&error));
                self.note(step, elapsed, Answer::Error { label });
                return None;
            }
        };
        let code = reply.code();
        let ok = expected.contains(&reply.status);
        let answer = if ok {
            Answer::Expected {
                status: reply.status,
                code: code.as_deref(),
            }
        } else {
            Answer::Error {
                label: crate::stats::label(reply.status, code.as_deref()),
            }
        };
        self.note(step, elapsed, answer);
        ok.then_some(reply)
    }

    /// Counts `answer` in this user's measurements and in the current second's.
    fn note(&mut self, step: &'static str, elapsed: Duration, answer: Answer<'_>) {
        self.shared
            .window
            .lock()
            .expect("window")
            .record(step, elapsed, &answer);
        self.recorder.record(step, elapsed, answer);
    }

    async fn browse(&mut self) {
        let shared = self.shared.clone();
        let products = &shared.seed.products;
        let page = self.iteration % products.len().div_ceil(20).max(1);
        let path = format!("/api/products?page={page}&size=20");
        self.call("products.list", Method::GET, &path, None, None, &[200])
            .await;
        let product = products[(self.index + self.iteration) % products.len()];
        let path = format!("/api/products/{product}");
        self.call("products.detail", Method::GET, &path, None, None, &[200])
            .await;
        self.popular().await;
    }

    async fn popular(&mut self) {
        let path = "/api/products/popular?days=3&limit=5";
        self.call("products.popular", Method::GET, path, None, None, &[200])
            .await;
    }

    async fn charge(&mut self) {
        let (_, user) = self.user();
        let path = format!("/api/users/{}/points/charge", user.id);
        let body = json!({ "amount": 10_000 });
        self.call(
            "points.charge",
            Method::POST,
            &path,
            Some(&user.token),
            Some(body),
            &[200],
        )
        .await;
    }

    async fn journey(&mut self) {
        let (user_index, user) = self.user();
        let token = Some(user.token.as_str());
        self.popular().await;
        let products = &self.shared.seed.products;
        let product = products[(self.index + self.iteration) % products.len()];
        let path = format!("/api/products/{product}");
        let Some(detail) = self
            .call("products.detail", Method::GET, &path, None, None, &[200])
            .await
        else {
            return;
        };
        let detail = detail.json();
        let options: Vec<&Value> = detail["options"]
            .as_array()
            .map(|o| o.iter().filter(|o| o["stock"].as_i64() > Some(0)).collect())
            .unwrap_or_default();
        let Some(option) = options.get(self.iteration % options.len().max(1)) else {
            return;
        };
        let option_id = option["id"].as_i64().unwrap_or_default();
        let path = format!("/api/users/{}/points/charge", user.id);
        let body = json!({ "amount": 100_000 });
        self.call(
            "points.charge",
            Method::POST,
            &path,
            token,
            Some(body),
            &[200],
        )
        .await;

        let body = json!({ "items": [{ "productOptionId": option_id, "quantity": 1 }] });
        let Some(placed) = self
            .call(
                "orders.place",
                Method::POST,
                "/api/orders",
                token,
                Some(body),
                &[202],
            )
            .await
        else {
            return;
        };
        let placed_at = Instant::now();
        let Some(order) = placed.json()["id"].as_i64() else {
            return;
        };
        self.shared
            .log
            .lock()
            .expect("run log")
            .orders
            .push(PlacedOrder {
                id: order,
                user: user_index,
                option_id,
                quantity: 1,
            });
        let mut status = String::new();
        let stream = format!("/api/orders/{order}/events");
        let followed = follow_events(
            &self.shared.target,
            &stream,
            token,
            STREAM_TIMEOUT,
            |_, o| {
                status = o["status"].as_str().unwrap_or_default().to_owned();
                status != "PENDING"
            },
        )
        .await;
        let awaiting = status == "AWAITING_PAYMENT";
        let refusal = (!awaiting).then_some(status.as_str());
        self.record_stream("orders.saga", placed_at.elapsed(), followed, refusal);
        if !awaiting {
            return;
        }
        let path = format!("/api/orders/{order}/payment");
        self.call(
            "orders.pay",
            Method::POST,
            &path,
            token,
            Some(json!({})),
            &[200],
        )
        .await;
        let path = format!("/api/orders/{order}");
        self.call("orders.read", Method::GET, &path, token, None, &[200])
            .await;
    }

    async fn flash_sale(&mut self) {
        let Some(coupon) = self.shared.coupon else {
            return;
        };
        let (user_index, user) = self.user();
        self.issue_coupon(coupon, user_index, &user.token).await;
    }

    /// Asks for `coupon` as seeded user `user_index`; an accepted request is noted for the
    /// verdict and its task followed to its result.
    async fn issue_coupon(&mut self, coupon: i64, user_index: usize, token: &str) {
        let path = format!("/api/coupons/{coupon}/issue");
        let reply = self
            .call(
                "coupons.issue",
                Method::POST,
                &path,
                Some(token),
                Some(json!({})),
                &[202, 409],
            )
            .await;
        let Some(reply) = reply.filter(|r| r.status == 202) else {
            return;
        };
        let accepted = Instant::now();
        let Some(task_id) = reply.json()["taskId"].as_str().map(str::to_owned) else {
            return;
        };
        self.shared
            .log
            .lock()
            .expect("run log")
            .coupon_tasks
            .push(AcceptedTask {
                task_id: task_id.clone(),
                coupon_id: coupon,
                user: user_index,
            });
        self.follow_task(&task_id, accepted).await;
    }

    /// Follows the coupon task `task_id` (accepted at `accepted`) to its result.
    async fn follow_task(&mut self, task_id: &str, accepted: Instant) {
        let path = format!("/api/coupon-tasks/{task_id}/events");
        let followed = follow_events(
            &self.shared.target,
            &path,
            None,
            STREAM_TIMEOUT,
            |event, _| event == "result",
        )
        .await;
        self.record_stream("coupons.result", accepted.elapsed(), followed, None);
    }

    /// Records a followed stream as `step`: found what it waited for (with `refusal`, the
    /// status it found instead, as an expected 409 outcome), ended early, or timed out.
    fn record_stream(
        &mut self,
        step: &'static str,
        elapsed: Duration,
        followed: anyhow::Result<bool>,
        refusal: Option<&str>,
    ) {
        let answer = match (followed, refusal) {
            (Ok(true), None) => Answer::Expected {
                status: 200,
                code: None,
            },
            (Ok(true), Some(status)) => Answer::Expected {
                status: 409,
                code: Some(status),
            },
            (Ok(false), _) => Answer::Error {
                label: "stream ended early".into(),
            },
            (Err(error), _) => Answer::Error {
                label: short(&error),
            },
        };
        self.note(step, elapsed, answer);
    }
}

/// An error's first line, short enough for a table.
fn short(error: &anyhow::Error) -> String {
    let text = error.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(60).collect()
}
