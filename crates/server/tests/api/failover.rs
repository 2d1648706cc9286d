//! Failover drill on a Redis Cluster of the test's own (`scripts/redis-cluster-up` on spare
//! ports, stopped by its pids): mid-rush the primary that owns the coupon's slot is killed and
//! its replica takes over. Two `--role api` instances and a worker share PostgreSQL, Kafka and
//! the cluster.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use server::config::Role;
use testkit::SharedServices;

use crate::helpers::{share, shared_services, spawn_with, unique, Deployment, TestApp};

/// The cluster's `cluster-node-timeout`: how long a primary may be silent before its replica
/// is promoted.
const NODE_TIMEOUT_MS: u64 = 2_000;

/// Six `redis-server`s in cluster mode (three primaries, three replicas), stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    first: u16,
    url: String,
}

/// One drill at a time: each starts six nodes on ports it found free, which another drill
/// starting at the same moment would find free too.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    fn start() -> Self {
        let first = spare_ports();
        let dir = tempfile::tempdir().unwrap();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster-up");
        let started = Command::new(script)
            .arg(dir.path())
            .arg(first.to_string())
            .env("REDIS_CLUSTER_NODE_TIMEOUT_MS", NODE_TIMEOUT_MS.to_string())
            .output()
            .expect("scripts/redis-cluster-up runs");
        assert!(
            started.status.success(),
            "the cluster did not start: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let url = String::from_utf8(started.stdout).unwrap().trim().to_owned();
        Self { dir, first, url }
    }

    /// The slot of `key`, as the cluster computes it (`CLUSTER KEYSLOT`).
    fn slot_of(&self, key: &str) -> u16 {
        let slot = Command::new("redis-cli")
            .args(["-p", &self.first.to_string(), "cluster", "keyslot", key])
            .output()
            .unwrap();
        String::from_utf8(slot.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The port of the primary that owns `slot`, from `CLUSTER NODES` as the first node that
    /// answers sees it (the first may be the one killed).
    fn primary_of(&self, slot: u16) -> u16 {
        let nodes = (self.first..self.first + 6)
            .map(|port| {
                let nodes = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "nodes"])
                    .output()
                    .unwrap();
                String::from_utf8(nodes.stdout).unwrap()
            })
            .find(|nodes| nodes.contains("master"))
            .unwrap_or_default();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&slot))
            });
            if owns {
                let address = fields[1].split('@').next().unwrap();
                return address.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("no primary owns slot {slot}:\n{nodes}")
    }

    fn kill(&self, port: u16) {
        let pid =
            std::fs::read_to_string(self.dir.path().join(format!("{port}/redis.pid"))).unwrap();
        let killed = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(killed.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for port in self.first..self.first + 6 {
            if let Ok(pid) =
                std::fs::read_to_string(self.dir.path().join(format!("{port}/redis.pid")))
            {
                let _ = Command::new("kill")
                    .arg(pid.trim())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// Six free ports in a row whose cluster-bus ports (+10,000) are free too.
fn spare_ports() -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    // Ports up to 55,000 (their bus ports stay below 65,536), from a start of this process's.
    let start = 20_000 + (std::process::id() % 300) as u16 * 100;
    (start..55_000)
        .chain(20_000..start)
        .step_by(7)
        .find(|&first| (first..first + 6).all(|port| free(port) && free(port + 10_000)))
        .expect("six spare ports")
}

/// What a user of the rush ended with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ended {
    /// Holds the coupon (its task succeeded).
    Holds,
    /// Told `SOLD_OUT` (409): asks again if a unit is reopened.
    SoldOut,
    /// Accepted, then told `SOLD_OUT` by its task (the gate admitted more than the database
    /// had, after a lost write): final, since this user has asked (`ALREADY_REQUESTED`).
    TaskSoldOut,
    /// Anything a user should never see (a 500, a task that never ends).
    Unexpected(String),
}

/// Asks for `coupon` as a user does: again after a 503 or while an own request is in flight,
/// following an accepted task to its end and asking again if it failed. Counts the 503s.
async fn ask_until_decided(
    app: &TestApp,
    token: &str,
    coupon: i64,
    unavailable: &std::sync::atomic::AtomicU64,
) -> Ended {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let response = app.issue(token, coupon).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        match (status, code.as_str()) {
            (202, _) => {
                let task = body["taskId"].as_str().unwrap().to_owned();
                match task_end(app, &task).await {
                    Some(None) => return Ended::Holds,
                    Some(Some(reason)) if reason == "ALREADY_ISSUED" => return Ended::Holds,
                    Some(Some(reason)) if reason == "SOLD_OUT" => return Ended::TaskSoldOut,
                    // A withdrawn request: this user may ask again.
                    Some(Some(_)) => {}
                    None => return Ended::Unexpected(format!("task {task} never ended")),
                }
            }
            (409, "SOLD_OUT") => return Ended::SoldOut,
            (409, "ALREADY_ISSUED") => return Ended::Holds,
            (409, "ALREADY_REQUESTED") => {}
            (503, "UNAVAILABLE" | "OVERLOADED") => {
                unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            _ => return Ended::Unexpected(format!("{status} {body}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ended::Unexpected("undecided after 90 s".to_owned())
}

/// How `task` ended (within a minute): `None` when it succeeded, else its failure's reason.
async fn task_end(app: &TestApp, task: &str) -> Option<Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let response = app.get(&format!("/api/coupon-tasks/{task}")).await;
        if response.status() == 200 {
            let now: Value = response.json().await.unwrap();
            match now["status"].as_str() {
                Some("SUCCESS") => return Some(None),
                Some("FAILED") => return Some(Some(now["reason"].as_str().unwrap_or("").into())),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A coupon sale over two `--role api` instances and a worker, on PostgreSQL, Kafka and a
/// cluster of the drill's own; users are `FIRST_USER + i`, spread over the two instances.
struct Sale {
    cluster: Cluster,
    worker: TestApp,
    apis: [Arc<TestApp>; 2],
    admin: crate::helpers::TestUser,
    coupon: i64,
    units: i64,
    users: usize,
    /// The 503 answers users were given.
    unavailable: Arc<std::sync::atomic::AtomicU64>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

const FIRST_USER: i64 = 9_000;

impl Sale {
    /// `units` of a new coupon for `users`; `None` (the drill is skipped) without the shared
    /// services.
    async fn open(units: i64, users: usize) -> Option<Self> {
        let services = shared_services()?;
        let turn = ONE_AT_A_TIME.lock().await;
        let cluster = Cluster::start();
        let services = SharedServices {
            cache: cluster.url.clone(),
            ..services
        };
        let namespace = format!("t_{}", unique());
        let instance = |role: Role| {
            let (services, namespace) = (services.clone(), namespace.clone());
            spawn_with(Deployment::Production, move |s| {
                share(s, &services, &namespace);
                s.role = role;
                s.coupon.reconcile_after_ms = 3_000;
                s.coupon.restock_after_ms = 3_000;
                s.rate.coupon_issues = 1_000_000;
            })
        };
        let worker = instance(Role::Worker).await.unwrap();
        let apis = [
            Arc::new(instance(Role::Api).await.unwrap()),
            Arc::new(instance(Role::Api).await.unwrap()),
        ];
        let admin = apis[0].new_admin().await;
        let coupon = apis[0]
            .new_coupon(&admin, units, Duration::from_secs(3600))
            .await;
        Some(Self {
            cluster,
            worker,
            apis,
            admin,
            coupon,
            units,
            users,
            unavailable: Arc::default(),
            _turn: turn,
        })
    }

    /// User `i`'s instance and token.
    fn user(&self, i: usize) -> (Arc<TestApp>, String) {
        let app = self.apis[i % 2].clone();
        let token = app.token_for(FIRST_USER + i as i64);
        (app, token)
    }

    /// Runs `each` for every user, the `i`th after `i × spacing`; kills the primary that owns
    /// `key`'s slot after `kill_after`. Returns what each user ended with, and how long after
    /// the kill the last one did.
    async fn run<F, Fut>(
        &self,
        spacing: Duration,
        key: &str,
        kill_after: Duration,
        each: F,
    ) -> (Vec<Ended>, Duration)
    where
        F: Fn(Arc<TestApp>, String, Arc<std::sync::atomic::AtomicU64>) -> Fut,
        Fut: std::future::Future<Output = Ended> + Send + 'static,
    {
        let slot = self.cluster.slot_of(key);
        let owner = self.cluster.primary_of(slot);
        let users: Vec<_> = (0..self.users)
            .map(|i| {
                let (app, token) = self.user(i);
                let user = each(app, token, self.unavailable.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(spacing * i as u32).await;
                    user.await
                })
            })
            .collect();
        tokio::time::sleep(kill_after).await;
        self.cluster.kill(owner);
        let killed = Instant::now();
        let mut ended = Vec::new();
        for user in users {
            ended.push(user.await.unwrap());
        }
        assert_ne!(
            self.cluster.primary_of(slot),
            owner,
            "the replica took {key}'s slot over"
        );
        (ended, killed.elapsed())
    }

    async fn remaining(&self) -> i64 {
        let detail = self.apis[0]
            .get_json(&format!("/api/coupons/{}", self.coupon), None)
            .await;
        detail["remainingQuantity"].as_i64().unwrap()
    }

    /// Units a lost write stranded are reopened once the sale is quiet and sold to those who
    /// ask again (the users told SOLD_OUT, as later arrivals would be); then every user has a
    /// unit or a final SOLD_OUT, and the database holds the total, once each.
    async fn check(&self, mut ended: Vec<Ended>, drill: &str, took: Duration) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.remaining().await > 0 && Instant::now() < deadline {
            for (i, end) in ended.iter_mut().enumerate() {
                if *end == Ended::SoldOut {
                    let (app, token) = self.user(i);
                    *end = ask_until_decided(&app, &token, self.coupon, &self.unavailable).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut tally = BTreeMap::<Ended, usize>::new();
        for end in &ended {
            *tally.entry(end.clone()).or_default() += 1;
        }
        eprintln!(
            "{drill}: {tally:?}; {} answers 503 UNAVAILABLE; over {took:?} after the kill",
            self.unavailable.load(std::sync::atomic::Ordering::Relaxed)
        );
        let count = |end: &Ended| tally.get(end).copied().unwrap_or(0);
        assert_eq!(
            (
                count(&Ended::Holds),
                count(&Ended::SoldOut) + count(&Ended::TaskSoldOut),
                ended.len()
                    - count(&Ended::Holds)
                    - count(&Ended::SoldOut)
                    - count(&Ended::TaskSoldOut),
            ),
            (self.units as usize, self.users - self.units as usize, 0),
            "every user got a unit or a final SOLD_OUT, and nothing else: {tally:?}"
        );
        assert_eq!(self.remaining().await, 0, "every unit issued");
        let (issued, holders): (i64, i64) =
            db::on_db!(&self.worker.state.db, c => db::sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM user_coupons WHERE coupon_id = $1",
        )
        .bind(self.coupon)
        .fetch_one(c)
        .await)
            .unwrap();
        assert_eq!(
            (issued, holders),
            (self.units, self.units),
            "the total, once each"
        );
    }
}

/// Drill: a coupon rush over two API instances; a second into it the primary that owns the
/// coupon's slot is killed (-9). Its replica is promoted within the node timeout; meanwhile the
/// API answers 503 `UNAVAILABLE`, never a 500, and users ask again. Writes the old primary had
/// not passed on are lost (replication is asynchronous), and the database stays the judge:
/// afterwards nobody holds two, exactly the total is issued, every accepted task ended, and a
/// unit a lost write stranded is reopened by the worker and sold to whoever asks after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coupon_rush_through_a_primary_failover_issues_every_unit_once() {
    let Some(sale) = Sale::open(30, 60).await else {
        return;
    };
    let coupon = sale.coupon;
    let (ended, took) = sale
        .run(
            Duration::from_millis(40),
            &format!("c:{coupon}"),
            Duration::from_secs(1),
            move |app, token, unavailable| async move {
                ask_until_decided(&app, &token, coupon, &unavailable).await
            },
        )
        .await;
    sale.check(ended, "coupon failover drill", took).await;
}

/// Waits in `room`'s line as its page does (joining again when the place is gone, reading the
/// place until admitted), then asks for `coupon` with the admission; once the room has closed,
/// asks as anyone does ([`ask_until_decided`]). Counts the 503s.
async fn wait_in_line(
    app: &TestApp,
    token: &str,
    room: i64,
    coupon: i64,
    unavailable: &std::sync::atomic::AtomicU64,
) -> Ended {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut place: Option<String> = None;
    while Instant::now() < deadline {
        let (status, body) = match &place {
            None => app.join_room(token, room).await,
            Some(id) => {
                let response = app.get(&format!("/api/room-places/{id}")).await;
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
        };
        let code = body["code"].as_str().unwrap_or_default();
        match (status, code, body["status"].as_str().unwrap_or_default()) {
            (200 | 201, _, "WAITING") => {
                place = body["placeId"].as_str().map(str::to_owned);
            }
            (200 | 201, _, "ADMITTED") => {
                place = body["placeId"].as_str().map(str::to_owned);
                let response = app.issue(token, coupon).await;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                match (status, body["code"].as_str().unwrap_or_default()) {
                    (202, _) => {
                        let task = body["taskId"].as_str().unwrap().to_owned();
                        match task_end(app, &task).await {
                            Some(None) => return Ended::Holds,
                            Some(Some(reason)) if reason == "ALREADY_ISSUED" => {
                                return Ended::Holds
                            }
                            Some(Some(reason)) if reason == "SOLD_OUT" => {
                                return Ended::TaskSoldOut
                            }
                            // Withdrawn, its admission spent: only a unit reopened after the
                            // room closed is left to ask for.
                            Some(Some(_)) => {
                                return once_closed(app, token, room, coupon, unavailable).await
                            }
                            None => return Ended::Unexpected(format!("task {task} never ended")),
                        }
                    }
                    (409, "SOLD_OUT") => return Ended::SoldOut,
                    (409, "ALREADY_ISSUED") => return Ended::Holds,
                    // The admission was lost with the old primary's last writes, or is in use.
                    (403, "ADMISSION_REQUIRED") | (409, "ALREADY_REQUESTED") => {}
                    (503, "UNAVAILABLE" | "OVERLOADED") => {
                        unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => return Ended::Unexpected(format!("issue: {status} {body}")),
                }
            }
            // Spent on a request whose task failed: the line holds nothing more for this user.
            (200 | 201, _, "USED") => {
                return once_closed(app, token, room, coupon, unavailable).await;
            }
            (200 | 201, _, "CLOSED") | (409, "ROOM_CLOSED", _) => {
                return ask_until_decided(app, token, coupon, unavailable).await;
            }
            // Gone with the old primary's last writes, or expired: join again, as the page does.
            (200 | 201, _, "EXPIRED" | "LEFT") | (404, _, _) => place = None,
            (503, "UNAVAILABLE" | "OVERLOADED", _) => {
                unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            _ => return Ended::Unexpected(format!("room: {status} {body}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ended::Unexpected("undecided after 90 s".to_owned())
}

/// Waits until `room` has closed, then asks for `coupon` as anyone does.
async fn once_closed(
    app: &TestApp,
    token: &str,
    room: i64,
    coupon: i64,
    unavailable: &std::sync::atomic::AtomicU64,
) -> Ended {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let shown = app.get(&format!("/api/rooms/{room}")).await;
        let shown: Value = shown.json().await.unwrap_or(Value::Null);
        if shown["status"] == "CLOSED" {
            return ask_until_decided(app, token, coupon, unavailable).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ended::Unexpected("the room never closed".to_owned())
}

/// Drill: a room in front of a coupon, its line on a Redis Cluster; while the line admits, the
/// primary that owns the room's slot is killed (-9). Meanwhile the room's requests answer 503
/// `UNAVAILABLE` (the line fails closed), never a 500; afterwards the line goes on from what the
/// replica had (a place lost with the last writes is joined again, as the page does), every
/// unit is issued once, everyone else is told `SOLD_OUT`, and the room closes as sold out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_through_a_primary_failover_goes_on_admitting_and_closes_sold_out() {
    let Some(sale) = Sale::open(30, 60).await else {
        return;
    };
    let coupon = sale.coupon;
    let room = sale.apis[0]
        .new_room(
            &sale.admin,
            serde_json::json!({ "couponId": coupon }),
            chrono::Duration::zero(),
            10,
        )
        .await;
    let room = room["id"].as_i64().unwrap();
    let (ended, took) = sale
        .run(
            Duration::from_millis(20),
            &format!("r:{room}"),
            Duration::from_secs(2),
            move |app, token, unavailable| async move {
                wait_in_line(&app, &token, room, coupon, &unavailable).await
            },
        )
        .await;
    sale.check(ended, "room failover drill", took).await;
    // The tick finds the sale sold out within a second or so.
    let deadline = Instant::now() + Duration::from_secs(15);
    let path = format!("/api/rooms/{room}");
    let mut shown = sale.apis[1].get_json(&path, None).await;
    while shown["status"] != "CLOSED" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        shown = sale.apis[1].get_json(&path, None).await;
    }
    assert_eq!(
        (&shown["status"], &shown["closedReason"]),
        (&serde_json::json!("CLOSED"), &serde_json::json!("SOLD_OUT")),
        "{shown}"
    )
}
