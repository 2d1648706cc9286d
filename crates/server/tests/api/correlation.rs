//! One id through a whole saga: the request id of the order's placement is the correlation id
//! of every event the saga makes, in whichever process, and on every log line a consumer
//! writes while handling them (`STAMPEDE_LOG_FORMAT=json`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server::config::Role;

use crate::{
    helpers::{shared_services, spawn_with, Deployment},
    process::{self, free_port, Process, SECRET},
};

/// The JSON log lines of `log` written inside a span whose field `field` is `value`.
fn lines_in_span(log: &str, field: &str, value: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s[field] == value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sagas_events_and_log_lines_in_the_api_and_worker_processes_carry_its_request_id() {
    let Some(services) = shared_services() else {
        return;
    };
    // The in-test app serves the test's own setup calls; its process runs no consumers.
    let app = spawn_with(Deployment::Production, |s| {
        s.jwt_secret = Some(SECRET.to_owned().into());
        s.role = Role::Api;
    })
    .await
    .unwrap();
    let json_logs = |port: u16| {
        let mut env = process::sharing(&app, &services);
        env.extend([
            ("STAMPEDE_BIND".to_owned(), format!("127.0.0.1:{port}")),
            ("STAMPEDE_LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "info,stampede=debug".to_owned()),
        ]);
        env
    };
    let api_port = free_port();
    let api = Process::start(json_logs(api_port), "api");
    let worker = Process::start(json_logs(free_port()), "worker");

    let (admin, user) = (app.new_admin().await, app.new_user().await);
    let (_, options) = app.new_product(&admin, &[(5_000, 10)]).await;
    let charged = app
        .charge(&user, "me", json!({ "amount": 50_000 }), None)
        .await;
    assert_eq!(charged.status(), 200);
    let request_id = "saga-trace-1";
    let placed = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{api_port}/api/orders"))
        .bearer_auth(&user.token)
        .header("x-request-id", request_id)
        .json(&json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 202);
    assert_eq!(placed.headers()["x-request-id"], request_id);
    let order = placed.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app.order(&user, order).await["status"].clone();
        if status == "AWAITING_PAYMENT" {
            break;
        }
        assert!(Instant::now() < deadline, "the order is still {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let events = testkit::outbox(&app.state.db, &order.to_string()).await;
    let topics: Vec<&str> = events.iter().map(|e| e.topic()).collect();
    assert!(
        topics.len() >= 3,
        "placed, reserved and priced at least: {topics:?}"
    );
    for event in &events {
        assert_eq!(event.correlation_id, request_id, "{}", event.topic());
    }

    let api_lines = lines_in_span(&api.log(), "request_id", request_id);
    assert!(
        api_lines
            .iter()
            .any(|l| l["spans"][0]["route"] == "/api/orders"),
        "the api's lines of the request: {api_lines:?}"
    );
    let worker_lines = lines_in_span(&worker.log(), "correlation_id", request_id);
    let handled_by: Vec<&str> = worker_lines
        .iter()
        .filter(|l| l["message"] == "event handled")
        .filter_map(|l| l["spans"].as_array()?.last()?["consumer"].as_str())
        .collect();
    for group in ["catalog-reserve", "order-saga"] {
        assert!(
            handled_by.contains(&group),
            "{group} handled the saga's events in the worker: {handled_by:?}"
        );
    }
    let order_events: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    for line in lines_in_span(&worker.log(), "consumer", "order-saga") {
        let span = line["spans"].as_array().unwrap().last().unwrap().clone();
        if order_events.contains(&span["event_id"].as_str().unwrap().to_owned()) {
            assert_eq!(span["correlation_id"], request_id, "{line}");
        }
    }
}
