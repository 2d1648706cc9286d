//! A worker killed with SIGKILL in the middle of a batch of orders, then restarted: every
//! order still reaches a payable or terminal state, stock and points are conserved, and the
//! popular-products ranking counts every paid unit once.
//!
//! Embedded: the whole server is one `stampede serve` process (it is the worker), killed and
//! restarted on the same data directory and port. Production: an API instance runs in the
//! test and a `stampede serve --role worker` process beside it is killed and restarted.

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use server::{tokens::Tokens, Role};

use crate::{
    helpers::{shared_services, spawn_with, unique, wait_retry_after, Deployment, TestApp},
    process::{self, free_port, Process, SECRET},
};

/// Where the test talks to the API, and how it mints tokens.
struct Api {
    base: String,
    client: reqwest::Client,
    tokens: Tokens,
}

impl Api {
    fn new(base: String) -> Self {
        Self {
            base,
            // No pooled connections: they would outlive a killed server.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            tokens: Tokens::from_secret(SECRET.as_bytes(), Duration::from_secs(3600)),
        }
    }

    /// The answer to one call. Like a client, it asks again after a 503 (a loaded machine may
    /// leave the API short of a database connection for a moment), after its `Retry-After` and
    /// with the same `Idempotency-Key`, so a call that did take effect has no second one.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let key = unique();
        for _ in 0..20 {
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(token)
                .header("Idempotency-Key", &key);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if status == 503 {
                wait_retry_after(&response).await;
                continue;
            }
            return (status, response.json().await.unwrap_or(Value::Null));
        }
        panic!("{path} was answered 503 twenty times")
    }

    async fn sign_up(&self) -> (i64, String) {
        let email = format!("c{}@example.com", unique());
        let response = self
            .client
            .post(format!("{}/api/users", self.base))
            .json(&json!({ "name": "crash", "email": email, "password": "pass-word" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        (id, self.tokens.issue(id, false).unwrap().0)
    }
}

async fn a_killed_worker_loses_no_order(api: Api, worker: &mut Process) {
    let admin = api.tokens.issue(1, true).unwrap().0;
    let (status, product) = api
        .call(
            Method::POST,
            "/api/admin/products",
            &admin,
            Some(json!({
                "name": "Crash pad",
                "category": "outdoor",
                "description": "a pad that survives falls",
                "options": [{ "name": "S", "price": 3_000, "stock": 40 }, { "name": "L", "price": 5_000, "stock": 40 }]
            })),
        )
        .await;
    assert_eq!(status, 201);
    let product_id = product["id"].as_i64().unwrap();
    let options: Vec<i64> = product["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    let mut users = Vec::new();
    for _ in 0..4 {
        let (id, token) = api.sign_up().await;
        let (status, _) = api
            .call(
                Method::POST,
                &format!("/api/users/{id}/points/charge"),
                &token,
                Some(json!({ "amount": 500_000 })),
            )
            .await;
        assert_eq!(status, 200);
        users.push(token);
    }

    let place_batch = |offset: usize| {
        let (api, users, options) = (&api, &users, &options);
        stream::iter(0..40)
            .map(move |i| async move {
                let n = offset + i;
                let body = json!({ "items": [{ "productOptionId": options[n % 2], "quantity": 1 + n % 3 }] });
                let token = &users[n % users.len()];
                let (status, order) = api.call(Method::POST, "/api/orders", token, Some(body)).await;
                assert_eq!(status, 202, "{order}");
                (token.clone(), order["id"].as_i64().unwrap())
            })
            .buffer_unordered(20)
            .collect::<Vec<_>>()
    };
    let mut orders = place_batch(0).await;
    // The sagas of the first batch are in flight: cut them off.
    worker.kill();
    worker.restart();
    orders.extend(place_batch(40).await);

    let settled = |orders: &[(String, i64)]| {
        let api = &api;
        let orders = orders.to_vec();
        async move {
            let mut all = Vec::new();
            for (token, id) in orders {
                let (status, order) = api
                    .call(Method::GET, &format!("/api/orders/{id}"), &token, None)
                    .await;
                assert_eq!(status, 200);
                all.push((token, order));
            }
            all
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let outcome = loop {
        let now = settled(&orders).await;
        if now.iter().all(|(_, o)| o["status"] != "PENDING") {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "orders still PENDING after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Pay every other payable order, cancel every fourth, and kill the worker once more while
    // their events are in flight.
    let payable: Vec<&(String, Value)> = outcome
        .iter()
        .filter(|(_, o)| o["status"] == "AWAITING_PAYMENT")
        .collect();
    assert!(!payable.is_empty());
    for (i, (token, order)) in payable.iter().enumerate() {
        let id = order["id"].as_i64().unwrap();
        let action = match i % 4 {
            0 | 2 => "payment",
            1 => "cancel",
            _ => continue,
        };
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/api/orders/{id}/{action}"),
                token,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{action} {body}");
    }
    worker.kill();
    worker.restart();

    // Conservation, once the compensations have run: stock = initial − units held by orders
    // that are AWAITING_PAYMENT or PAID.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = settled(&orders).await;
        let held: i64 = now
            .iter()
            .filter(|(_, o)| o["status"] == "AWAITING_PAYMENT" || o["status"] == "PAID")
            .flat_map(|(_, o)| o["items"].as_array().unwrap().clone())
            .map(|item| item["quantity"].as_i64().unwrap())
            .sum();
        let (_, product) = api
            .call(
                Method::GET,
                &format!("/api/products/{product_id}"),
                &admin,
                None,
            )
            .await;
        let stock: i64 = product["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["stock"].as_i64().unwrap())
            .sum();
        assert!(stock >= 0);
        if stock + held == 80 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stock {stock} + held {held} != 80"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Points: balance = charges − payments + refunds, and the payments are the paid totals.
    let now = settled(&orders).await;
    for token in &users {
        let (_, points) = api
            .call(Method::GET, "/api/users/me/points", token, None)
            .await;
        let (_, history) = api
            .call(Method::GET, "/api/users/me/points/history", token, None)
            .await;
        let sum = |kind: &str| -> i64 {
            history
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["type"] == kind)
                .map(|h| h["amount"].as_i64().unwrap())
                .sum()
        };
        assert_eq!(
            points["point"].as_i64().unwrap(),
            sum("CHARGE") - sum("USE") + sum("REFUND")
        );
        let paid: i64 = now
            .iter()
            .filter(|(t, o)| t == token && o["status"] == "PAID")
            .map(|(_, o)| o["totalAmount"].as_i64().unwrap())
            .sum();
        assert_eq!(sum("USE"), paid);
    }
    // The ranking counts every paid unit once, through both kills (embedded: the restarted
    // process rebuilds its counts from the paid orders).
    let paid_units: i64 = now
        .iter()
        .filter(|(_, o)| o["status"] == "PAID")
        .flat_map(|(_, o)| o["items"].as_array().unwrap().clone())
        .map(|item| item["quantity"].as_i64().unwrap())
        .sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, ranking) = api
            .call(
                Method::GET,
                "/api/products/popular?days=2&limit=5",
                &admin,
                None,
            )
            .await;
        assert_eq!(status, 200, "{ranking}");
        let sold = ranking
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["productId"] == product_id)
            .map_or(0, |p| p["soldQuantity"].as_i64().unwrap());
        assert!(sold <= paid_units, "ranking {sold} > paid {paid_units}");
        if sold == paid_units {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ranking {sold} != paid {paid_units}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_order_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = vec![
        (
            "STAMPEDE_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        ),
        ("STAMPEDE_BIND".to_owned(), format!("127.0.0.1:{port}")),
        ("STAMPEDE_BUS_POLL_INTERVAL_MS".to_owned(), "100".to_owned()),
    ];
    let mut server = Process::start(env, "all");
    a_killed_worker_loses_no_order(Api::new(format!("http://127.0.0.1:{port}")), &mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_order_production() {
    let Some(services) = shared_services() else {
        return;
    };
    let Some(app): Option<TestApp> = spawn_with(Deployment::Production, |s| {
        s.role = Role::Api;
        s.jwt_secret = Some(SECRET.to_owned().into());
        s.orders.max_open = 1000;
        s.rate.orders = 100_000;
    })
    .await
    else {
        return;
    };
    let mut env = process::sharing(&app, &services);
    env.extend([
        // Restarted under its name, the worker takes its partitions back at once. (Tansu never
        // drops an anonymous member that died without leaving, so an anonymous restart would
        // find the dead member still holding partitions.)
        (
            "STAMPEDE_KAFKA_INSTANCE_ID".to_owned(),
            "crash-worker-1".to_owned(),
        ),
    ]);
    let mut worker = Process::start(env, "worker");
    a_killed_worker_loses_no_order(Api::new(app.address.clone()), &mut worker).await;
}
