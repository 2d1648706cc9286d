//! `spawn_app()`: the real application on port 0 with its own data — a SQLite file in a temp
//! directory (embedded), or a PostgreSQL schema, Redis key prefix and Kafka topic prefix of its
//! own (production) — so tests run in parallel.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use server::{AppState, Application, Settings};
use testkit::SharedServices;
use tokio::{sync::oneshot, task::JoinHandle};

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A user of the app and their bearer token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub token: String,
}

/// Which adapter set an app runs on.
#[derive(Debug, Clone, Copy)]
pub enum Deployment {
    Embedded,
    Production,
}

/// The application on the embedded default.
pub async fn spawn_app() -> TestApp {
    spawn(Deployment::Embedded)
        .await
        .expect("the embedded deployment needs nothing")
}

/// The shared services of the production deployment, when the test environment names them.
pub fn shared_services() -> Option<SharedServices> {
    let services = SharedServices::from_env();
    if services.is_none() {
        eprintln!("skipped: STAMPEDE_TEST_{{DATABASE,CACHE,BUS}}_URL are not all set");
    }
    services
}

/// Points `settings` at `services` under `namespace`.
pub fn share(settings: &mut Settings, services: &SharedServices, namespace: &str) {
    settings.share_services(
        &services.database,
        &services.cache,
        &services.bus,
        namespace,
    );
}

/// The application on PostgreSQL, Redis and Kafka, from `STAMPEDE_TEST_DATABASE_URL`,
/// `STAMPEDE_TEST_CACHE_URL` and `STAMPEDE_TEST_BUS_URL`; `None` (the test is skipped) when
/// they are not set. When they are set, a service that is down fails the test.
pub async fn spawn_production_app() -> Option<TestApp> {
    spawn(Deployment::Production).await
}

pub fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

async fn spawn(deployment: Deployment) -> Option<TestApp> {
    spawn_with(deployment, |_| {}).await
}

/// The application on `deployment`, with `configure` applied last (to share a namespace with
/// another instance, or to turn on chaos settings). `None` when production is not configured.
pub async fn spawn_with(
    deployment: Deployment,
    configure: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    settings.bus.poll_interval_ms = 100;
    // Every test user signs up from 127.0.0.1; the per-address rate has tests of its own.
    settings.rate.signups = 1_000_000;
    if let Deployment::Production = deployment {
        let services = shared_services()?;
        // `t_` schemas are what .ci/run drops before a run.
        share(&mut settings, &services, &format!("t_{}", unique()));
        settings.bus.partitions = 4;
    }
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .unwrap_or_else(|e| panic!("{deployment:?} app failed to start: {e:#}"));
    let address = format!("http://{}", app.address());
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Some(TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        stop: Some(stop),
        server,
        _dir: dir,
    })
}

/// Logs to the test output when `TEST_LOG` is set (quiet otherwise).
fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        server::telemetry::init(server::config::LogFormat::Text);
    }
}

impl TestApp {
    /// Asks `/health/ready` until it answers 200 (Kafka consumers join their groups in a few
    /// seconds), for at most 40 s; the first answer that was not 200, if any, and the body of
    /// the 200.
    pub async fn wait_ready(&self) -> (Option<serde_json::Value>, serde_json::Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        let mut first_refusal = None;
        loop {
            let ready = self.get("/health/ready").await;
            let status = ready.status();
            let body: serde_json::Value = ready.json().await.unwrap();
            if status == 200 {
                return (first_refusal, body);
            }
            assert!(std::time::Instant::now() < deadline, "never ready: {body}");
            first_refusal.get_or_insert(body);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A request with `token` as its bearer token (if any).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.address));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn sign_up(&self, name: &str, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/users",
            &serde_json::json!({ "name": name, "email": email, "password": password }),
        )
        .await
    }

    pub async fn token(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/token",
            &serde_json::json!({ "email": email, "password": password }),
        )
        .await
    }

    /// A new user, signed up and holding a token.
    pub async fn new_user(&self) -> TestUser {
        let email = format!("u{}@example.com", unique());
        let response = self.sign_up("tester", &email, "pass-word").await;
        assert_eq!(response.status(), 201);
        let id = response.json::<serde_json::Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        self.logged_in(id, &email, "pass-word").await
    }

    /// A single-use stream ticket of the holder of `token` (`POST /api/stream-tickets`).
    pub async fn stream_ticket(&self, token: &str) -> String {
        let response = self
            .request(Method::POST, "/api/stream-tickets", Some(token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["ticket"].as_str().unwrap().to_owned()
    }

    /// A bearer token for `user_id` (no account needed: the routes trust the token).
    pub fn token_for(&self, user_id: i64) -> String {
        self.state.tokens.issue(user_id, false).unwrap().0
    }

    /// A new admin (created as `stampede admin create` does), holding a token.
    pub async fn new_admin(&self) -> TestUser {
        let email = format!("a{}@example.com", unique());
        let id = match points::users::create_admin(&self.state.db, &email, "admin-pass", "admin")
            .await
            .unwrap()
        {
            points::users::AdminCreated::Created { id } => id,
            other => panic!("{other:?}"),
        };
        self.logged_in(id, &email, "admin-pass").await
    }

    async fn logged_in(&self, id: i64, email: &str, password: &str) -> TestUser {
        let response = self.token(email, password).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        TestUser {
            id,
            token: body["accessToken"].as_str().unwrap().to_owned(),
        }
    }

    /// `POST /api/users/{user}/points/charge` as `as_user`, with an optional Idempotency-Key.
    pub async fn charge(
        &self,
        as_user: &TestUser,
        user: &str,
        body: serde_json::Value,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .request(
                reqwest::Method::POST,
                &format!("/api/users/{user}/points/charge"),
                Some(&as_user.token),
            )
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request sent")
    }

    /// `GET path` (as `token`, if any), expecting 200; the JSON body.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let response = self.request(Method::GET, path, token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// `POST path` with an empty JSON body, as `user` (pay, cancel).
    pub async fn post_as(&self, user: &TestUser, path: &str) -> reqwest::Response {
        self.action(&user.token, path).await
    }

    async fn action(&self, token: &str, path: &str) -> reqwest::Response {
        self.request(Method::POST, path, Some(token))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
    }

    /// Asks for one unit of `coupon` with `token`.
    pub async fn issue(&self, token: &str, coupon: i64) -> reqwest::Response {
        self.action(token, &format!("/api/coupons/{coupon}/issue"))
            .await
    }

    /// A waiting room in front of `sale` (`{"couponId": ..}` or `{"productId": ..}`) opening
    /// `opens_in` from now, admitting `rate` a second, made by `admin`; the room.
    pub async fn new_room(
        &self,
        admin: &TestUser,
        sale: Value,
        opens_in: chrono::Duration,
        rate: i64,
    ) -> Value {
        let mut body = json!({
            "name": "Friday drop",
            "opensAt": (chrono::Utc::now() + opens_in).to_rfc3339(),
            "admitPerSecond": rate,
        });
        body.as_object_mut()
            .unwrap()
            .extend(sale.as_object().unwrap().clone());
        let response = self
            .request(Method::POST, "/api/admin/rooms", Some(&admin.token))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// A room in front of a new coupon of `units`, open now at one admission a second and
    /// paused at once: people line up and nobody is admitted until it is resumed. Its id.
    pub async fn paused_room(&self, admin: &TestUser, units: i64) -> i64 {
        let coupon = self
            .new_coupon(admin, units, Duration::from_secs(3600))
            .await;
        let sale = json!({"couponId": coupon});
        let room = self
            .new_room(admin, sale, chrono::Duration::zero(), 1)
            .await;
        let room = room["id"].as_i64().unwrap();
        let (status, paused) = self.change_room(admin, room, json!({"paused": true})).await;
        assert_eq!(status, 200, "{paused}");
        assert_eq!(paused["status"], "PAUSED");
        room
    }

    /// `PATCH /api/admin/rooms/{room}` with `change`, as `admin`: the status code and the room.
    pub async fn change_room(&self, admin: &TestUser, room: i64, change: Value) -> (u16, Value) {
        let path = format!("/api/admin/rooms/{room}");
        let response = self.request(Method::PATCH, &path, Some(&admin.token));
        let response = response.json(&change).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The holder of `token` joins `room`: the status code and the place.
    pub async fn join_room(&self, token: &str, room: i64) -> (u16, Value) {
        let path = format!("/api/rooms/{room}/places");
        let response = self.request(Method::POST, &path, Some(token));
        let response = response.json(&json!({})).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// A product whose options have these `(price, stock)`; its id and the options' ids.
    pub async fn new_product(&self, admin: &TestUser, options: &[(i64, i64)]) -> (i64, Vec<i64>) {
        let options: Vec<Value> = options
            .iter()
            .enumerate()
            .map(|(i, (price, stock))| json!({ "name": format!("size {i}"), "price": price, "stock": stock }))
            .collect();
        let response = self
            .request(Method::POST, "/api/admin/products", Some(&admin.token))
            .json(&json!({
                "name": "Trail runner",
                "category": "shoes",
                "description": "grippy trail running shoes",
                "options": options,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        let ids = body["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect();
        (body["id"].as_i64().unwrap(), ids)
    }

    /// A 10% coupon of `quantity` units expiring in `expires_in`; its id.
    pub async fn new_coupon(&self, admin: &TestUser, quantity: i64, expires_in: Duration) -> i64 {
        self.coupon_of(admin, "PERCENT", 10, quantity, expires_in)
            .await
    }

    /// A coupon of `kind` (`FIXED` or `PERCENT`) and `value`; its id.
    pub async fn coupon_of(
        &self,
        admin: &TestUser,
        kind: &str,
        value: i64,
        quantity: i64,
        expires_in: Duration,
    ) -> i64 {
        let response = self
            .request(Method::POST, "/api/admin/coupons", Some(&admin.token))
            .json(&json!({
                "name": "flash sale",
                "discountType": kind,
                "discountValue": value,
                "totalQuantity": quantity,
                "expiresAt": (chrono::Utc::now() + expires_in).to_rfc3339(),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    /// Places `body` as `user` and expects 202 `PENDING`; the order id.
    pub async fn place_order(&self, user: &TestUser, body: &Value) -> i64 {
        let response = self
            .request(Method::POST, "/api/orders", Some(&user.token))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["status"], "PENDING");
        order["id"].as_i64().unwrap()
    }

    /// The order `id`, as `user` reads it.
    pub async fn order(&self, user: &TestUser, id: i64) -> Value {
        self.get_json(&format!("/api/orders/{id}"), Some(&user.token))
            .await
    }

    /// Waits until every event written so far is published and consumed by every consumer
    /// group of this app (no sleeping in tests: this is the point to wait at).
    pub async fn drain_events(&self) {
        self.state
            .bus
            .wait_idle(Duration::from_secs(30))
            .await
            .expect("events drained");
    }

    /// Stops the app gracefully and returns how `run_until_stopped` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await?
    }
}

/// Declares each test twice: on the embedded deployment, and on the production one when its
/// services are configured. The test functions before the `;` take a `TestApp`; those after
/// `deployment:` take the `Deployment` and start their own app (to change its settings).
#[macro_export]
macro_rules! on_both_deployments {
    ($($test:ident),* $(,)? $(; deployment: $($own:ident),+ $(,)?)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test($crate::helpers::spawn_app().await).await
            })*
            $($(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $own() {
                super::$own($crate::helpers::Deployment::Embedded).await
            })+)?
        }
        mod production {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(app) = $crate::helpers::spawn_production_app().await {
                    super::$test(app).await
                }
            })*
            $($(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $own() {
                super::$own($crate::helpers::Deployment::Production).await
            })+)?
        }
    };
}

/// Sleeps for the `Retry-After` of a 503, as a client does before asking again.
pub async fn wait_retry_after(response: &reqwest::Response) {
    let seconds: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

/// One Server-Sent Event: its `event`, `id` and `data` fields.
#[derive(Debug, Default)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: String,
}

/// The events in the text of an SSE stream (comment lines skipped).
pub fn sse_events(text: &str) -> Vec<SseEvent> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = SseEvent::default();
            let mut fields = 0;
            for (field, value) in block.lines().filter_map(|line| line.split_once(':')) {
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "event" => event.event = value,
                    "id" => event.id = value,
                    "data" => event.data = value,
                    _ => continue,
                }
                fields += 1;
            }
            (fields > 0).then_some(event)
        })
        .collect()
}

/// Asserts `response` is a problem with `status` and `code`; returns the body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    body
}

/// Asserts `response` is 422 `VALIDATION_FAILED` and that its detail starts with `field`.
pub async fn assert_invalid(response: reqwest::Response, field: &str) {
    let body = assert_problem(response, 422, "VALIDATION_FAILED").await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(field),
        "expected {field} to be named: {body}"
    );
}
