//! Memory under a crowd: the release `stampede` binary runs as a child process while its RSS
//! (`VmRSS`) is sampled every 20 ms, through four phases:
//! 1. `BENCH_SIGNUPS` (default 2,000) sign-ups from 200 concurrent clients;
//! 2. as many logins from 200 clients;
//! 3. a login flood of wrong passwords from 200 clients for `BENCH_FLOOD_SECS` (default 30),
//!    with `GET /health/live` timed meanwhile on a connection of its own;
//! 4. the coupon burst: `BENCH_USERS` (default 100,000) users ask once for a coupon of
//!    `BENCH_STOCK` (default 10,000) units over 1,000 connections, until every unit is issued.
//!
//! Clients answered 503 `OVERLOADED` wait its `Retry-After` and try again, as a real client
//! would. Each phase prints its peak RSS, the RSS settled 3 s after it, its answers by status,
//! and any 5xx other than 503 `OVERLOADED` (there should be none).
//! - embedded (SQLite, memory, db://), always;
//! - production (PostgreSQL, Redis, Kafka), when the `STAMPEDE_TEST_*` URLs are set.
//!
//! `BENCH_DEPLOYMENT=embedded` or `=production` runs one of them only.
//!
//! Run: `cargo bench -p server --bench memory`.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use loadkit::batch::{connect, fire, post, Call};
use server::tokens::Tokens;

mod support;

const SECRET: &str = "memory-bench-secret-0123456789abcdef";
const CLIENTS: usize = 200;

/// The server under test, in a process of its own.
struct Server {
    child: Child,
    address: SocketAddr,
    peak_kib: Arc<AtomicU64>,
}

impl Server {
    fn start(env: &[(String, String)], dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stampede"))
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("STAMPEDE_BIND", "127.0.0.1:0")
            .env("STAMPEDE_DATA_DIR", dir)
            .env("STAMPEDE_JWT_SECRET", SECRET)
            // Every bench client signs up from 127.0.0.1.
            .env("STAMPEDE_RATE_SIGNUPS", "1000000")
            .env("RUST_LOG", "warn,server=info")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let address = loop {
            let line = lines
                .next()
                .ok_or_else(|| anyhow::anyhow!("server exited"))??;
            if let Some((_, rest)) = line.split_once("listening on http://") {
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                break address.parse()?;
            }
        };
        // Keep reading, or the server blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let (pid, peak) = (child.id(), peak_kib.clone());
        tokio::spawn(async move {
            while let Some(kib) = rss_kib(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Ok(Self {
            child,
            address,
            peak_kib,
        })
    }

    fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Runs `phase`, then prints its peak RSS and the RSS settled 3 s later.
    async fn measure<T>(&self, name: &str, phase: impl std::future::Future<Output = T>) -> T {
        self.peak_kib
            .store(rss_kib(self.child.id()).unwrap_or(0), Ordering::Relaxed);
        let out = phase.await;
        let peak = self.peak_kib.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let settled = rss_kib(self.child.id()).unwrap_or(0);
        println!(
            "{name:<44} RSS peak {:>6.1} MB, settled {:>6.1} MB",
            peak as f64 / 1024.0,
            settled as f64 / 1024.0
        );
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Answers by status (503s by code), and the latencies of the successful ones.
#[derive(Default)]
struct Tally {
    answers: BTreeMap<String, usize>,
}

impl Tally {
    fn record(&mut self, status: u16, code: Option<&str>) {
        let key = match code {
            Some(code) if status >= 500 => format!("{status} {code}"),
            _ => status.to_string(),
        };
        *self.answers.entry(key).or_default() += 1;
    }

    fn unexpected_5xx(&self) -> usize {
        self.answers
            .iter()
            .filter(|(k, _)| k.starts_with('5') && k.as_str() != "503 OVERLOADED")
            .map(|(_, n)| n)
            .sum()
    }

    fn print(&self, name: &str) {
        println!(
            "{:<44} answers {:?}; unexpected 5xx: {}",
            name,
            self.answers,
            self.unexpected_5xx()
        );
    }
}

/// Sends one JSON POST until it is not refused with 503 `OVERLOADED` (waiting `Retry-After`
/// between tries); records every answer.
async fn post_until_admitted(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    tally: &Mutex<Tally>,
) -> u16 {
    loop {
        let Ok(response) = client.post(url).json(body).send().await else {
            tally.lock().unwrap().record(0, Some("connection error"));
            return 0;
        };
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let code = if status >= 500 {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            body["code"].as_str().map(str::to_owned)
        } else {
            None
        };
        tally.lock().unwrap().record(status, code.as_deref());
        match (status, code.as_deref(), retry) {
            (503, Some("OVERLOADED"), Some(seconds)) => {
                tokio::time::sleep(Duration::from_secs(seconds)).await
            }
            _ => return status,
        }
    }
}

/// `count` requests from `CLIENTS` clients, request `n` made by `body(n)` to `path`; prints the
/// rate of the ones answered `ok`.
async fn crowd(
    server: &Server,
    name: &str,
    path: &str,
    count: usize,
    ok: u16,
    body: impl Fn(usize) -> serde_json::Value + Send + Sync + 'static,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let (url, tally, next) = (
        format!("{}{path}", server.base()),
        Arc::new(Mutex::new(Tally::default())),
        Arc::new(AtomicUsize::new(0)),
    );
    let body = Arc::new(body);
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, tally, next, body) = (
                client.clone(),
                url.clone(),
                tally.clone(),
                next.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let mut admitted = 0usize;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return admitted;
                    }
                    if post_until_admitted(&client, &url, &body(n), &tally).await == ok {
                        admitted += 1;
                    }
                }
            })
        })
        .collect();
    let mut done = 0;
    for worker in workers {
        done += worker.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{name:<44} {done} of {count} answered {ok}: {:.1}/s over {elapsed:.1} s",
        done as f64 / elapsed
    );
    tally.lock().unwrap().print(name);
}

/// Wrong passwords from `CLIENTS` clients for `seconds`, with `/health/live` timed meanwhile.
async fn login_flood(server: &Server, emails: Arc<Vec<String>>, seconds: u64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let url = format!("{}/api/auth/token", server.base());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let (client, url, tally, emails) =
                (client.clone(), url.clone(), tally.clone(), emails.clone());
            tokio::spawn(async move {
                let mut n = worker;
                while Instant::now() < deadline {
                    let body =
                        serde_json::json!({ "email": emails[n % emails.len()], "password": "wrong-one" });
                    let response = client.post(&url).json(&body).send().await;
                    let (status, code) = match response {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            (status, body["code"].as_str().map(str::to_owned))
                        }
                        Err(_) => (0, Some("connection error".to_owned())),
                    };
                    tally.lock().unwrap().record(status, code.as_deref());
                    n += CLIENTS;
                }
            })
        })
        .collect();
    let probe = reqwest::Client::new();
    let live = format!("{}/health/live", server.base());
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        if probe
            .get(&live)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            latencies.push(sent.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    println!(
        "{:<44} GET /health/live meanwhile: {} ({} probes)",
        "login flood",
        loadkit::batch::percentiles(&latencies),
        latencies.len()
    );
    tally.lock().unwrap().print("login flood");
}

/// The coupon burst over 1,000 raw connections, then waits until every unit is issued.
async fn coupon_burst(server: &Server, users: usize, stock: usize) -> anyhow::Result<()> {
    let tokens = Tokens::from_secret(SECRET.as_bytes(), Duration::from_secs(3600));
    let admin = tokens.issue(1, true)?.0;
    let coupon = support::create_coupon(server.address, &admin, stock).await?;
    let requests: Vec<Call> = (0..users)
        .map(|n| {
            let token = tokens.issue(100_000 + n as i64, false).expect("token").0;
            post(&format!("/api/coupons/{coupon}/issue"), &token, "{}")
        })
        .collect();
    let connections = connect(server.address, 1_000).await?;
    let (_, answers) = fire("coupon burst: POST issue", connections, requests).await?;
    println!("{:<44} answers {answers:?}", "coupon burst");
    let url = format!("{}/api/coupons/{coupon}", server.base());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let detail: serde_json::Value = reqwest::get(&url).await?.json().await?;
        if detail["remainingQuantity"] == 0 || Instant::now() > deadline {
            println!(
                "{:<44} remaining {} of {stock}",
                "coupon burst", detail["remainingQuantity"]
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(name: &str, env: Vec<(String, String)>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(&env, dir.path())?;
    let signups = support::env_number("BENCH_SIGNUPS", 2_000);
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let emails: Arc<Vec<String>> = Arc::new(
        (0..signups)
            .map(|n| format!("m{n}-{run_id}@example.com"))
            .collect(),
    );
    println!("== {name}");
    let idle = rss_kib(server.child.id()).unwrap_or(0);
    println!("{:<44} RSS {:>6.1} MB", "started", idle as f64 / 1024.0);
    let list = emails.clone();
    server
        .measure("sign-ups", crowd(&server, "sign-ups", "/api/users", signups, 201, move |n| {
            serde_json::json!({ "name": "bench", "email": list[n], "password": "pass-word" })
        }))
        .await;
    let list = emails.clone();
    server
        .measure(
            "logins",
            crowd(
                &server,
                "logins",
                "/api/auth/token",
                signups,
                200,
                move |n| serde_json::json!({ "email": list[n], "password": "pass-word" }),
            ),
        )
        .await;
    let seconds = support::env_number("BENCH_FLOOD_SECS", 30) as u64;
    server
        .measure("login flood", login_flood(&server, emails, seconds))
        .await;
    let users = support::env_number("BENCH_USERS", 100_000);
    let stock = support::env_number("BENCH_STOCK", 10_000);
    server
        .measure("coupon burst", coupon_burst(&server, users, stock))
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let only = std::env::var("BENCH_DEPLOYMENT").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    if wanted("embedded") {
        run("embedded", Vec::new()).await?;
    }
    let services = testkit::SharedServices::from_env().filter(|_| wanted("production"));
    if let Some(services) = services {
        let namespace = format!("bench_{}", uuid::Uuid::now_v7().simple());
        let env = [
            ("STAMPEDE_DATABASE_URL", services.database),
            ("STAMPEDE_DATABASE_SCHEMA", namespace.clone()),
            ("STAMPEDE_CACHE_URL", services.cache),
            ("STAMPEDE_CACHE_PREFIX", format!("{namespace}:")),
            ("STAMPEDE_BUS_URL", services.bus),
            ("STAMPEDE_TOPIC_PREFIX", format!("{namespace}-")),
        ];
        run(
            "production",
            env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        )
        .await?;
    }
    Ok(())
}
