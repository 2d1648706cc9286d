//! Fault drills on the production adapters with a broker or a Redis of the test's own (so that
//! it may be paused): `KAFKA_PORT=<port> ../shared/tools/kafka-up <dir>`, or `redis-server` on a
//! free port, stopped by its pid.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    coupons::{create_coupon, issue},
    helpers::{assert_problem, shared_services, spawn_with, Deployment},
    orders::product,
};

/// A Kafka-protocol broker on a free port, stopped when dropped.
struct Broker {
    pid: String,
    url: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/kafka-up");
        let started = Command::new(&script)
            .arg(dir.path())
            .env("KAFKA_PORT", port.to_string())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        let pid = std::fs::read_to_string(dir.path().join("broker.pid")).unwrap();
        Self {
            pid: pid.trim().to_owned(),
            url: format!("kafka://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    fn pause(&self) {
        pause(&self.pid);
    }
}

/// SIGSTOP to `pid`, returning once every thread of it is stopped (a signal is delivered when
/// the kernel gets to it, which on a loaded machine may be after the next request).
fn pause(pid: &str) {
    let sent = Command::new("kill").args(["-STOP", pid]).status().unwrap();
    assert!(sent.success());
    let tasks = format!("/proc/{pid}/task");
    let stopped = |task: std::fs::DirEntry| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
    };
    while !std::fs::read_dir(&tasks).unwrap().flatten().all(stopped) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid]).status();
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

/// Broker paused for a few seconds (shorter than the consumers' session): an issue request
/// fails fast with 503 and holds nothing; once the broker is back, the unit it held is issued
/// to someone, and the user may ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_request_the_paused_broker_cannot_acknowledge_fails_fast_and_holds_nothing() {
    if shared_services().is_none() {
        return;
    }
    let broker = Broker::start();
    let app = spawn_with(Deployment::Production, |s| {
        s.bus_url = broker.url.clone();
        s.coupon_publish_timeout_ms = 1_000;
    })
    .await
    .unwrap();
    let admin = app.new_admin().await;
    let coupon = create_coupon(&app, &admin, 2, Duration::from_secs(3600)).await;
    let (first, second, third) = (app.token_for(501), app.token_for(502), app.token_for(503));
    assert_eq!(issue(&app, &first, coupon).await.status(), 202);

    broker.pause();
    let asked = Instant::now();
    let refused = issue(&app, &second, coupon).await;
    let waited = asked.elapsed();
    broker.signal("-CONT");
    let (status, retry) = (
        refused.status(),
        refused.headers().get("retry-after").cloned(),
    );
    let body = refused.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"code\":\"UNAVAILABLE\""), "{body}");
    assert!(retry.is_some(), "{body}");
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );

    // The withdrawn request held nothing: its user may ask again, and the unit is there.
    let again = loop {
        let response = issue(&app, &second, coupon).await;
        if response.status() != 503 {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(again.status(), 202);
    assert_problem(issue(&app, &third, coupon).await, 409, "SOLD_OUT").await;
    app.drain_events().await;
    let detail: Value = app
        .get(&format!("/api/coupons/{coupon}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["remainingQuantity"], 0, "both units issued");
    assert!(eventbus::dead_letters::pending(&app.state.db)
        .await
        .unwrap()
        .is_empty());
}

/// A paused Redis (it answers nothing) does not hold up placing an order: the rate check and
/// the commit's wake-up give up on it quickly and the order is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_placed_promptly_while_redis_is_paused() {
    if shared_services().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let pid = redis.id().to_string();
    let url = format!("redis://127.0.0.1:{port}");
    let app = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break spawn_with(Deployment::Production, |s| s.cache_url = url.clone().into())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (_, options) = product(&app, &admin, &[(1_000, 10)]).await;
    pause(&pid);
    let asked = Instant::now();
    let placed = app
        .request(reqwest::Method::POST, "/api/orders", Some(&user.token))
        .json(&serde_json::json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    let waited = asked.elapsed();
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let _ = redis.kill();
    let _ = redis.wait();
    assert_eq!(placed.status(), 202);
    // Redis's own response timeout is 5 s: each of the two waits would take that long.
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
}
