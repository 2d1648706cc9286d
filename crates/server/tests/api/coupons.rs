//! First-come coupons over HTTP: exact issuance under races, redelivery, cache loss, several
//! instances, and results pushed over Server-Sent Events.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use futures::{stream, StreamExt as _};
use reqwest::Method;
use serde_json::{json, Value};
use server::{Role, Settings};

use crate::helpers::{
    assert_invalid, assert_problem, share, shared_services, spawn_with, sse_events, unique,
    wait_retry_after, Deployment, TestApp,
};

/// A coupon that expired a minute ago, stored directly (the API only creates coupons that
/// expire in the future); the gate learns of it by rebuilding from the database.
async fn expired_coupon(app: &TestApp) -> i64 {
    let expired = Utc::now() - chrono::Duration::minutes(1);
    let mut tx = app.state.db.begin().await.unwrap();
    let id: i64 = db::on_tx!(tx, c => db::sqlx::query_scalar(
        "INSERT INTO coupons (name, discount_type, discount_value, total_quantity, expires_at, created_at) \
         VALUES ('last week sale', 'FIXED', 1000, 10, $1, $1) RETURNING id",
    )
    .bind(expired)
    .fetch_one(c)
    .await)
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Reads `/api/coupon-tasks/{task}/events` on `app` until its `result` event; returns the task.
/// A result that has not come within a minute fails the test with where the task stands.
async fn sse_result(app: &TestApp, task: &str) -> Value {
    match tokio::time::timeout(Duration::from_secs(60), read_result(app, task)).await {
        Ok(result) => result,
        Err(_) => {
            let now = app
                .get_json(&format!("/api/coupon-tasks/{task}"), None)
                .await;
            let stalled = app.state.bus.stalled();
            panic!("no result for task {task} within a minute: it is {now}; stalled consumers: {stalled:?}")
        }
    }
}

/// Like a client, opens the stream again after a 503 (a loaded instance may be short of
/// connections or streams for a moment), after the `Retry-After` it was given.
async fn read_result(app: &TestApp, task: &str) -> Value {
    let path = format!("/api/coupon-tasks/{task}/events");
    let response = loop {
        let response = app.request(Method::GET, &path, None).send().await.unwrap();
        if response.status() != 503 {
            break response;
        }
        wait_retry_after(&response).await;
        let body: Value = response.json().await.unwrap();
        assert!(["UNAVAILABLE", "OVERLOADED"].contains(&body["code"].as_str().unwrap()));
    };
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let events = sse_events(&text);
    let [event] = events.as_slice() else {
        panic!("one event expected: {text}")
    };
    assert_eq!(event.event, "result", "{text}");
    assert_eq!(event.id, task, "{text}");
    serde_json::from_str(&event.data).unwrap()
}

/// What a rush of issue requests got.
#[derive(Default, Debug)]
struct Rush {
    /// Accepted task ids, by user.
    accepted: HashMap<i64, String>,
    conflicts: usize,
}

/// Fires one request per entry of `users` (repeats are duplicates) at `apps` in turn, 200 at a
/// time, each asked again while the answer is 503 (the last units are held by requests still
/// being published). Every final answer is 202 or 409; a user is accepted at most once.
async fn rush(apps: &[&TestApp], coupon: i64, users: &[i64]) -> Rush {
    let answers: Vec<(i64, u16, Value)> = stream::iter(users.iter().enumerate())
        .map(|(i, &user)| {
            let app = apps[i % apps.len()];
            async move {
                for _ in 0..100 {
                    let response = app.issue(&app.token_for(user), coupon).await;
                    let status = response.status().as_u16();
                    let body = response.json::<Value>().await.unwrap();
                    if status != 503 {
                        return (user, status, body);
                    }
                    assert_eq!(body["code"], "UNAVAILABLE");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("user {user} was told to retry a hundred times")
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let mut rush = Rush::default();
    for (user, status, body) in answers {
        match status {
            202 => {
                assert_eq!(body["status"], "PENDING");
                assert_eq!(body["userId"], user);
                let task = body["taskId"].as_str().unwrap().to_owned();
                assert!(
                    rush.accepted.insert(user, task).is_none(),
                    "user {user} accepted twice"
                );
            }
            409 => {
                assert!(
                    ["ALREADY_REQUESTED", "SOLD_OUT"].contains(&body["code"].as_str().unwrap()),
                    "{body}"
                );
                rush.conflicts += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    rush
}

/// Checks the invariants after a rush: every accepted task is terminal, `SUCCESS` exactly
/// `issued` times and each with its stored user coupon, the rest `FAILED`; the coupon's
/// remaining quantity agrees. Returns the number issued.
async fn assert_settled(app: &TestApp, coupon: i64, total: i64, rush: &Rush) -> i64 {
    let mut issued = 0;
    for (user, task) in &rush.accepted {
        let body = app
            .get_json(&format!("/api/coupon-tasks/{task}"), None)
            .await;
        assert_eq!(body["couponId"], coupon);
        match body["status"].as_str().unwrap() {
            "SUCCESS" => {
                issued += 1;
                let wallet = app
                    .get_json("/api/users/me/coupons", Some(&app.token_for(*user)))
                    .await;
                let held = wallet.as_array().unwrap();
                assert_eq!(held.len(), 1, "user {user}: {wallet}");
                assert_eq!(held[0]["userCouponId"], body["userCouponId"]);
                assert_eq!(held[0]["status"], "AVAILABLE");
            }
            "FAILED" => assert!(
                ["SOLD_OUT", "ALREADY_ISSUED"].contains(&body["reason"].as_str().unwrap()),
                "{body}"
            ),
            other => panic!("task {task} is still {other}"),
        }
    }
    assert!(issued <= total, "over-issued: {issued} of {total}");
    let detail = app.get_json(&format!("/api/coupons/{coupon}"), None).await;
    assert_eq!(detail["remainingQuantity"], total - issued, "{detail}");
    issued
}

/// A database busy with other writers is a busy bus, not a broken one: with the writer held
/// 250 ms at a time, back to back, for two seconds, requests whose publish waits longer than the
/// publish timeout (100 ms) are waited for and accepted; none is withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_requests_queued_behind_busy_writers_are_accepted_not_withdrawn() {
    let app = spawn_with(Deployment::Embedded, |s| s.coupon.publish_timeout_ms = 100)
        .await
        .unwrap();
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 40, Duration::from_secs(3600)).await;
    let db = app.state.db.clone();
    let busy = tokio::spawn(async move {
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            let tx = db.begin().await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
            tx.commit().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answers: Vec<(i64, u16)> = stream::iter(700..740)
        .map(|user| {
            let app = &app;
            async move {
                tokio::time::sleep(Duration::from_millis((user as u64 % 40) * 40)).await;
                let status = app.issue(&app.token_for(user), coupon).await.status();
                (user, status.as_u16())
            }
        })
        .buffer_unordered(40)
        .collect()
        .await;
    busy.await.unwrap();
    let refused: Vec<&(i64, u16)> = answers.iter().filter(|(_, s)| *s != 202).collect();
    assert!(refused.is_empty(), "not accepted: {refused:?}");
    app.drain_events().await;
    let detail = app.get_json(&format!("/api/coupons/{coupon}"), None).await;
    assert_eq!(detail["remainingQuantity"], 0, "{detail}");
}

/// `n` users, then the first `duplicates` of them again.
fn users_with_duplicates(n: i64, duplicates: i64) -> Vec<i64> {
    (1..=n).chain(1..=duplicates).collect()
}

async fn a_thousand_users_and_their_duplicates_race_for_a_hundred_coupons(app: TestApp) {
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 100, Duration::from_secs(3600)).await;
    let rush = rush(&[&app], coupon, &users_with_duplicates(1_000, 200)).await;
    assert!(rush.accepted.len() >= 100, "{}", rush.accepted.len());
    assert_eq!(rush.accepted.len() + rush.conflicts, 1_200);
    assert!(rush.conflicts >= 200, "every duplicate is refused");
    app.drain_events().await;
    assert_eq!(assert_settled(&app, coupon, 100, &rush).await, 100);
    let late = app.issue(&app.token_for(5_000), coupon).await;
    assert_problem(late, 409, "SOLD_OUT").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for series in [
        r#"stampede_coupon_issue_requests_total{outcome="accepted"}"#,
        r#"stampede_coupon_issue_requests_total{outcome="sold_out"}"#,
        r#"stampede_coupon_tasks_total{status="SUCCESS",reason=""}"#,
    ] {
        assert!(metrics.contains(series), "{series} in /metrics");
    }
}

async fn a_late_subscriber_gets_the_result_at_once_and_a_second_request_is_refused(app: TestApp) {
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 1, Duration::from_secs(3600)).await;
    let user = app.new_user().await;
    let response = app.issue(&user.token, coupon).await;
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.unwrap();
    let task_id = task["taskId"].as_str().unwrap();
    assert_eq!(task["couponId"], coupon);
    assert_problem(
        app.issue(&user.token, coupon).await,
        409,
        "ALREADY_REQUESTED",
    )
    .await;
    app.drain_events().await;

    let result = sse_result(&app, task_id).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    assert_eq!(
        result,
        app.get_json(&format!("/api/coupon-tasks/{task_id}"), None)
            .await
    );
    let again = sse_result(&app, task_id).await;
    assert_eq!(again, result, "a reconnecting client gets it again");
    let wallet = app
        .get_json("/api/users/me/coupons", Some(&user.token))
        .await;
    assert_eq!(wallet[0]["userCouponId"], result["userCouponId"]);
    assert_eq!(wallet[0]["discountType"], "PERCENT");
    assert_eq!(wallet[0]["name"], "flash sale");
    let detail = app.get_json(&format!("/api/coupons/{coupon}"), None).await;
    assert_eq!(detail["remainingQuantity"], 0);
    assert_eq!(detail["totalQuantity"], 1);
}

async fn a_subscriber_waiting_on_a_pending_task_gets_its_result(app: TestApp) {
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 5, Duration::from_secs(3600)).await;
    // Concurrent, so that most are accepted before the stock consumer has run.
    let tasks: Vec<String> = rush(&[&app], coupon, &(1..=20).collect::<Vec<_>>())
        .await
        .accepted
        .into_values()
        .collect();
    assert!(tasks.len() >= 5);
    let results: Vec<Value> = stream::iter(&tasks)
        .map(|task| sse_result(&app, task))
        .buffer_unordered(20)
        .collect()
        .await;
    let successes = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    assert_eq!(successes, 5, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r["status"] == "SUCCESS" || r["reason"] == "SOLD_OUT"));
}

async fn expired_unknown_and_malformed_requests_get_clear_problems(app: TestApp) {
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let coupon = expired_coupon(&app).await;
    assert_problem(app.issue(&user.token, coupon).await, 422, "COUPON_EXPIRED").await;
    assert_problem(app.issue(&user.token, 999_999).await, 404, "NOT_FOUND").await;
    assert_problem(app.issue(&user.token, -1).await, 404, "NOT_FOUND").await;
    let anonymous = app
        .request(Method::POST, &format!("/api/coupons/{coupon}/issue"), None)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "UNAUTHORIZED").await;
    for path in [
        "/api/coupon-tasks/not-a-uuid",
        &format!("/api/coupon-tasks/{}", uuid::Uuid::new_v4()),
    ] {
        assert_problem(app.get(path).await, 404, "NOT_FOUND").await;
    }
    let create = |body: Value, token: String| {
        app.request(Method::POST, "/api/admin/coupons", Some(&token))
            .json(&body)
            .send()
    };
    let valid = json!({ "name": "welcome5", "discountType": "FIXED", "discountValue": 5000,
        "totalQuantity": 0, "expiresAt": (Utc::now() + Duration::from_secs(60)).to_rfc3339() });
    assert_problem(
        create(valid.clone(), user.token.clone()).await.unwrap(),
        403,
        "FORBIDDEN",
    )
    .await;
    for (field, value) in [
        ("name", json!("four")),
        ("name", json!("x".repeat(21))),
        ("discountValue", json!(0)),
        ("totalQuantity", json!(-1)),
        (
            "expiresAt",
            json!((Utc::now() - Duration::from_secs(1)).to_rfc3339()),
        ),
    ] {
        let mut body = valid.clone();
        body[field] = value;
        assert_invalid(create(body, admin.token.clone()).await.unwrap(), field).await;
    }
    let mut percent = valid.clone();
    percent["discountType"] = json!("PERCENT");
    percent["discountValue"] = json!(101);
    assert_problem(
        create(percent, admin.token.clone()).await.unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;
    let mut wrong = valid.clone();
    wrong["discountType"] = json!("HALF");
    assert_problem(
        create(wrong, admin.token.clone()).await.unwrap(),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    let response = create(valid, admin.token.clone()).await.unwrap();
    assert_eq!(response.status(), 201, "quantity 0 is allowed");
    let empty: Value = response.json().await.unwrap();
    let sold_out = app.issue(&user.token, empty["id"].as_i64().unwrap()).await;
    assert_problem(sold_out, 409, "SOLD_OUT").await;
}

crate::on_both_deployments!(
    a_thousand_users_and_their_duplicates_race_for_a_hundred_coupons,
    a_late_subscriber_gets_the_result_at_once_and_a_second_request_is_refused,
    a_subscriber_waiting_on_a_pending_task_gets_its_result,
    expired_unknown_and_malformed_requests_get_clear_problems;
    deployment: every_event_delivered_twice_gives_the_same_counts,
);

async fn every_event_delivered_twice_gives_the_same_counts(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| s.bus.redeliver = true).await else {
        return;
    };
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 50, Duration::from_secs(3600)).await;
    let rush = rush(&[&app], coupon, &users_with_duplicates(400, 80)).await;
    app.drain_events().await;
    assert_eq!(assert_settled(&app, coupon, 50, &rush).await, 50);
}

/// Two instances of one production deployment (same schema, key prefix and topics).
async fn two_instances(
    roles: [Role; 2],
    configure: impl Fn(&mut Settings),
) -> Option<[TestApp; 2]> {
    let services = shared_services()?;
    let namespace = format!("t_{}", unique());
    let mut apps = Vec::new();
    for role in roles {
        let app = spawn_with(Deployment::Production, |s| {
            share(s, &services, &namespace);
            s.role = role;
            configure(s);
        })
        .await?;
        apps.push(app);
    }
    apps.try_into().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_for_one_coupon_keep_the_invariants_and_stream_to_either() {
    let Some([a, b]) = two_instances([Role::All, Role::All], |_| {}).await else {
        return;
    };
    let admin = a.new_admin().await;
    let coupon = a.new_coupon(&admin, 60, Duration::from_secs(3600)).await;
    let rush = rush(&[&a, &b], coupon, &users_with_duplicates(600, 120)).await;
    // Clients follow their tasks on the instance that did not accept them.
    let results: Vec<Value> = stream::iter(rush.accepted.values().take(100).enumerate())
        .map(|(i, task)| sse_result(if i % 2 == 0 { &b } else { &a }, task))
        .buffer_unordered(100)
        .collect()
        .await;
    assert!(results.iter().all(|r| r["status"] != "PENDING"));
    a.drain_events().await;
    b.drain_events().await;
    assert_eq!(assert_settled(&b, coupon, 60, &rush).await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_stored_by_a_worker_reaches_a_client_waiting_on_an_api_instance() {
    let Some([api, worker]) = two_instances([Role::Api, Role::Worker], |_| {}).await else {
        return;
    };
    let coupon = {
        let admin = api.new_admin().await;
        api.new_coupon(&admin, 1, Duration::from_secs(3600)).await
    };
    let body: Value = api
        .issue(&api.token_for(7), coupon)
        .await
        .json()
        .await
        .unwrap();
    let task = body["taskId"].as_str().unwrap().to_owned();
    let pending = api
        .get_json(&format!("/api/coupon-tasks/{task}"), None)
        .await;
    assert_eq!(pending["status"], "PENDING");
    let waiting = tokio::spawn({
        let address = api.address.clone();
        let task = task.clone();
        async move {
            let response = reqwest::get(format!("{address}/api/coupon-tasks/{task}/events"))
                .await
                .unwrap();
            response.text().await.unwrap()
        }
    });
    worker.drain_events().await;
    let text = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        text.contains("event: result") && text.contains("\"SUCCESS\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_redis_in_the_middle_of_a_rush_never_over_issues() {
    let Some(services) = shared_services() else {
        return;
    };
    // A Redis database of its own, so FLUSHDB (FLUSHALL, as far as this deployment can tell)
    // leaves other tests' keys alone.
    let cache_url = format!("{}/15", services.cache.trim_end_matches('/'));
    let Some(app) = spawn_with(Deployment::Production, |s| {
        s.cache.url = cache_url.clone().into()
    })
    .await
    else {
        return;
    };
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 100, Duration::from_secs(3600)).await;
    let users: Vec<i64> = (1..=900).collect();
    let mut first = rush(&[&app], coupon, &users[..150]).await;
    let client = redis::Client::open(cache_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let second = rush(&[&app], coupon, &users[150..]).await;
    first.accepted.extend(second.accepted);
    app.drain_events().await;
    assert_eq!(assert_settled(&app, coupon, 100, &first).await, 100);
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_embedded_app_mid_rush_rebuilds_the_gate_and_loses_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let spawn = || spawn_with(Deployment::Embedded, |s| s.data_dir = data_dir.clone());
    let app = spawn().await.unwrap();
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 100, Duration::from_secs(3600)).await;
    let mut rushed = rush(&[&app], coupon, &(1..=150).collect::<Vec<_>>()).await;
    app.stop().await.unwrap();

    let app = spawn().await.unwrap();
    let second = rush(&[&app], coupon, &(151..=600).collect::<Vec<_>>()).await;
    rushed.accepted.extend(second.accepted);
    app.drain_events().await;
    assert_eq!(assert_settled(&app, coupon, 100, &rushed).await, 100);
    let again = app.issue(&app.token_for(1), coupon).await;
    assert_eq!(again.status(), 409, "the rebuilt gate remembers who asked");
}
