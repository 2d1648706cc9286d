//! `spawn_app()`: the real application on port 0 with its own data — a SQLite file in a temp
//! directory (embedded), or a PostgreSQL schema, Redis key prefix and Kafka topic prefix of its
//! own (production) — so tests run in parallel.

use std::time::Duration;

use server::{AppState, Application, Settings, SharedServices};
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
    let services = SharedServices::from_test_env();
    if services.is_none() {
        eprintln!("skipped: STAMPEDE_TEST_{{DATABASE,CACHE,BUS}}_URL are not all set");
    }
    services
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
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = dir.path().to_owned();
    settings.bus_poll_interval_ms = 100;
    if let Deployment::Production = deployment {
        let services = shared_services()?;
        // `t_` schemas are what .ci/run drops before a run.
        settings.use_shared_services(&services, &format!("t_{}", unique()));
        settings.bus_partitions = 4;
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
/// services are configured. The test functions take a `TestApp`.
#[macro_export]
macro_rules! on_both_deployments {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test($crate::helpers::spawn_app().await).await
            })*
        }
        mod production {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(app) = $crate::helpers::spawn_production_app().await {
                    super::$test(app).await
                }
            })*
        }
    };
}

/// Declares each test twice, like [`on_both_deployments!`], for test functions that take the
/// `Deployment` and start their own app (to change its settings).
#[macro_export]
macro_rules! for_both_deployments {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test($crate::helpers::Deployment::Embedded).await
            })*
        }
        mod production {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test($crate::helpers::Deployment::Production).await
            })*
        }
    };
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
