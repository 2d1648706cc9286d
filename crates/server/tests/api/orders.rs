//! The order saga over HTTP: place, the saga's outcome, payment, cancel, expiry, the status
//! stream, and the invariants under concurrency and redelivery.

use std::{collections::HashMap, time::Duration};

use futures::{stream, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    assert_invalid, assert_problem, spawn_with, sse_events, Deployment, TestApp, TestUser,
};

/// A coupon of `kind` and `value` issued to `user`; returns its user coupon id.
async fn coupon_for(
    app: &TestApp,
    admin: &TestUser,
    user: &TestUser,
    kind: &str,
    value: i64,
) -> i64 {
    let coupon = app
        .coupon_of(admin, kind, value, 10, Duration::from_secs(3600))
        .await;
    assert_eq!(app.issue(&user.token, coupon).await.status(), 202);
    app.drain_events().await;
    let held = user_coupons(app, user).await;
    let held = held
        .iter()
        .find(|c| c["couponId"] == coupon)
        .expect("the coupon was issued");
    held["userCouponId"].as_i64().unwrap()
}

async fn user_coupons(app: &TestApp, user: &TestUser) -> Vec<Value> {
    app.get_json("/api/users/me/coupons", Some(&user.token))
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn coupon_status(app: &TestApp, user: &TestUser, user_coupon: i64) -> String {
    let held = user_coupons(app, user).await;
    let held = held
        .iter()
        .find(|c| c["userCouponId"] == user_coupon)
        .unwrap();
    held["status"].as_str().unwrap().to_owned()
}

async fn place(app: &TestApp, token: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .request(Method::POST, "/api/orders", Some(token))
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn stock(app: &TestApp, product: i64) -> Vec<i64> {
    let body: Value = app
        .get(&format!("/api/products/{product}"))
        .await
        .json()
        .await
        .unwrap();
    body["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["stock"].as_i64().unwrap())
        .collect()
}

async fn charge(app: &TestApp, user: &TestUser, amount: i64) {
    let response = app
        .charge(user, "me", json!({ "amount": amount }), None)
        .await;
    assert_eq!(response.status(), 200);
}

/// Reads `/api/orders/{id}/events` to its end; returns the `(id, order)` of each `status` event.
async fn status_events(
    app: &TestApp,
    user: &TestUser,
    id: i64,
    last: Option<i64>,
) -> Vec<(i64, Value)> {
    let mut request = app.request(
        Method::GET,
        &format!("/api/orders/{id}/events"),
        Some(&user.token),
    );
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    sse_events(&text)
        .into_iter()
        .filter(|event| event.event == "status")
        .map(|event| {
            (
                event.id.parse().unwrap(),
                serde_json::from_str(&event.data).unwrap(),
            )
        })
        .collect()
}

async fn an_order_runs_the_saga_to_paid_and_streams_each_status(app: TestApp) {
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (product_id, options) = app.new_product(&admin, &[(12_000, 5), (8_000, 5)]).await;
    let coupon = coupon_for(&app, &admin, &user, "PERCENT", 15).await;

    let body = json!({
        "items": [
            { "productOptionId": options[0], "quantity": 2 },
            { "productOptionId": options[1], "quantity": 1 }
        ],
        "userCouponId": coupon
    });
    let response = place(&app, &user.token, &body, None).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    app.drain_events().await;

    let priced = app.order(&user, id).await;
    assert_eq!(priced["status"], "AWAITING_PAYMENT", "{priced}");
    // 32,000 − floor(4,800)
    assert_eq!(
        (
            &priced["originalAmount"],
            &priced["discountAmount"],
            &priced["totalAmount"]
        ),
        (&json!(32_000), &json!(4_800), &json!(27_200))
    );
    assert_eq!(priced["items"][0]["productName"], "Trail runner");
    assert_eq!(priced["items"][0]["unitPrice"], 12_000);
    assert!(priced["paymentDeadline"].is_string());
    assert_eq!(stock(&app, product_id).await, [3, 4]);
    assert_eq!(coupon_status(&app, &user, coupon).await, "USED");

    charge(&app, &user, 20_000).await;
    let payment = app
        .post_as(&user, &format!("/api/orders/{id}/payment"))
        .await;
    assert_problem(payment, 409, "INSUFFICIENT_POINTS").await;
    assert_eq!(app.order(&user, id).await["status"], "AWAITING_PAYMENT");
    charge(&app, &user, 10_000).await;
    let payment = app
        .post_as(&user, &format!("/api/orders/{id}/payment"))
        .await;
    assert_eq!(payment.status(), 200);
    let payment: Value = payment.json().await.unwrap();
    assert_eq!(
        (&payment["orderId"], &payment["amount"], &payment["status"]),
        (&json!(id), &json!(27_200), &json!("PAID"))
    );
    let points = app
        .get_json("/api/users/me/points", Some(&user.token))
        .await;
    assert_eq!(points["point"], 30_000 - 27_200);
    let again = app
        .post_as(&user, &format!("/api/orders/{id}/payment"))
        .await;
    assert_problem(again, 409, "ORDER_NOT_PAYABLE").await;
    let cancel = app
        .post_as(&user, &format!("/api/orders/{id}/cancel"))
        .await;
    assert_problem(cancel, 409, "ORDER_NOT_CANCELLABLE").await;
    app.drain_events().await;

    // The stream: the current status first and done; after `Last-Event-ID`, the later ones.
    let current = status_events(&app, &user, id, None).await;
    assert_eq!(current.len(), 1);
    assert_eq!(
        (current[0].0, current[0].1["status"].as_str()),
        (3, Some("PAID"))
    );
    let later = status_events(&app, &user, id, Some(1)).await;
    let statuses: Vec<(i64, &str)> = later
        .iter()
        .map(|(v, o)| (*v, o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(2, "AWAITING_PAYMENT"), (3, "PAID")]);
    assert!(status_events(&app, &user, id, Some(3)).await.is_empty());

    let mine = app
        .get_json("/api/users/me/orders", Some(&user.token))
        .await;
    assert_eq!(mine["items"][0]["id"], id);
    assert_eq!(mine["items"][0]["status"], "PAID");
    assert_eq!(
        (mine["page"].as_i64(), mine["size"].as_i64()),
        (Some(0), Some(20))
    );
    assert_eq!(mine["total"], 1);
}

async fn a_stream_follows_a_pending_order_to_its_outcome(app: TestApp) {
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (_, options) = app.new_product(&admin, &[(1_000, 1)]).await;
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
    let id = app.place_order(&user, &body).await;
    // Opened at once, the stream usually starts at PENDING; it ends after the cancel.
    let follow = status_events(&app, &user, id, None);
    let cancel = async {
        app.drain_events().await;
        let response = app
            .post_as(&user, &format!("/api/orders/{id}/cancel"))
            .await;
        assert_eq!(response.status(), 200);
        let cancelled: Value = response.json().await.unwrap();
        assert_eq!(cancelled["status"], "CANCELLED");
    };
    let (events, ()) = tokio::join!(follow, cancel);
    let last = events.last().unwrap();
    assert_eq!(last.1["status"], "CANCELLED", "{events:?}");
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
}

async fn two_hundred_orders_race_for_fifty_units(app: TestApp) {
    let admin = app.new_admin().await;
    let (product_id, options) = app.new_product(&admin, &[(1_000, 50)]).await;
    let users: Vec<TestUser> = (0..200)
        .map(|i| TestUser {
            id: 9_000 + i,
            token: app.token_for(9_000 + i),
        })
        .collect();
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
    let ids: Vec<(usize, i64)> = stream::iter(0..200)
        .map(|which| {
            let (app, body, user) = (&app, &body, &users[which]);
            async move { (which, app.place_order(user, body).await) }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    app.drain_events().await;
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for (user, id) in ids {
        let order = app.order(&users[user], id).await;
        let outcome = format!(
            "{} {}",
            order["status"].as_str().unwrap(),
            order["failureReason"].as_str().unwrap_or("")
        );
        *outcomes.entry(outcome.trim().to_owned()).or_default() += 1;
    }
    assert_eq!(
        outcomes,
        HashMap::from([
            ("AWAITING_PAYMENT".to_owned(), 50),
            ("FAILED OUT_OF_STOCK".to_owned(), 150)
        ])
    );
    assert_eq!(stock(&app, product_id).await, [0]);
}

async fn a_refused_coupon_fails_the_order_and_releases_its_stock(app: TestApp) {
    let admin = app.new_admin().await;
    let (owner, thief) = (app.new_user().await, app.new_user().await);
    let (product_id, options) = app.new_product(&admin, &[(5_000, 3)]).await;
    let coupon = coupon_for(&app, &admin, &owner, "FIXED", 1_000).await;
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 2 }], "userCouponId": coupon });
    let id = app.place_order(&thief, &body).await;
    app.drain_events().await;
    let failed = app.order(&thief, id).await;
    assert_eq!(
        (failed["status"].as_str(), failed["failureReason"].as_str()),
        (Some("FAILED"), Some("COUPON_INVALID"))
    );
    assert_eq!(stock(&app, product_id).await, [3]);
    assert_eq!(coupon_status(&app, &owner, coupon).await, "AVAILABLE");
    // An order for more than there is fails without touching the coupon.
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 4 }], "userCouponId": coupon });
    let id = app.place_order(&owner, &body).await;
    app.drain_events().await;
    let failed = app.order(&owner, id).await;
    assert_eq!(failed["failureReason"], "OUT_OF_STOCK");
    assert_eq!(coupon_status(&app, &owner, coupon).await, "AVAILABLE");
    assert_eq!(stock(&app, product_id).await, [3]);
}

async fn cancelling_gives_back_stock_and_coupon(app: TestApp) {
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (product_id, options) = app.new_product(&admin, &[(5_000, 3)]).await;
    let coupon = coupon_for(&app, &admin, &user, "FIXED", 7_000).await;
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }], "userCouponId": coupon });
    let id = app.place_order(&user, &body).await;
    app.drain_events().await;
    let priced = app.order(&user, id).await;
    // A discount larger than the order leaves nothing to pay.
    assert_eq!(
        (&priced["discountAmount"], &priced["totalAmount"]),
        (&json!(7_000), &json!(0))
    );
    assert_eq!(stock(&app, product_id).await, [2]);

    let cancelled = app
        .post_as(&user, &format!("/api/orders/{id}/cancel"))
        .await;
    assert_eq!(cancelled.status(), 200);
    app.drain_events().await;
    assert_eq!(stock(&app, product_id).await, [3]);
    assert_eq!(coupon_status(&app, &user, coupon).await, "AVAILABLE");
    let payment = app
        .post_as(&user, &format!("/api/orders/{id}/payment"))
        .await;
    assert_problem(payment, 409, "ORDER_NOT_PAYABLE").await;

    // The restored coupon serves the next order.
    let id = app.place_order(&user, &body).await;
    app.drain_events().await;
    assert_eq!(app.order(&user, id).await["status"], "AWAITING_PAYMENT");
    let paid = app
        .post_as(&user, &format!("/api/orders/{id}/payment"))
        .await;
    assert_eq!(paid.status(), 200, "a zero total is paid with no points");
}

async fn bad_orders_get_clear_problems_and_a_key_replays(app: TestApp) {
    let admin = app.new_admin().await;
    let (user, other) = (app.new_user().await, app.new_user().await);
    let (_, options) = app.new_product(&admin, &[(1_000, 10)]).await;
    let line = |quantity: i64| json!({ "productOptionId": options[0], "quantity": quantity });
    for (body, field) in [
        (json!({ "items": [] }), "items"),
        (
            json!({ "items": (0..51).map(|i| json!({ "productOptionId": i + 1, "quantity": 1 })).collect::<Vec<_>>() }),
            "items",
        ),
        (json!({ "items": [line(0)] }), "items.quantity"),
        (json!({ "items": [line(1001)] }), "items.quantity"),
        (json!({ "items": [line(1), line(2)] }), "items"),
    ] {
        assert_invalid(place(&app, &user.token, &body, None).await, field).await;
    }
    let malformed = place(&app, &user.token, &json!({ "items": "many" }), None).await;
    assert_problem(malformed, 400, "VALIDATION_FAILED").await;
    let unknown = json!({ "items": [{ "productOptionId": options[0] + 1000, "quantity": 1 }] });
    assert_problem(
        place(&app, &user.token, &unknown, None).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let anonymous = app
        .request(Method::POST, "/api/orders", None)
        .json(&json!({ "items": [line(1)] }))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "UNAUTHORIZED").await;

    let body = json!({ "items": [line(1)] });
    let first = place(&app, &user.token, &body, Some("order-1")).await;
    assert_eq!(first.status(), 202);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    assert_eq!(location, format!("/api/orders/{}", first["id"]));
    let replay = place(&app, &user.token, &body, Some("order-1")).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["location"].to_str().unwrap(), location);
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    let reused = place(
        &app,
        &user.token,
        &json!({ "items": [line(2)] }),
        Some("order-1"),
    )
    .await;
    assert_problem(reused, 422, "IDEMPOTENCY_KEY_REUSED").await;
    let mine = app
        .get_json("/api/users/me/orders", Some(&user.token))
        .await;
    assert_eq!(mine["total"], 1, "the replay placed nothing");

    let id = first["id"].as_i64().unwrap();
    let theirs = app
        .request(
            Method::GET,
            &format!("/api/orders/{id}"),
            Some(&other.token),
        )
        .send()
        .await
        .unwrap();
    assert_problem(theirs, 403, "FORBIDDEN").await;
    let missing = app
        .request(Method::GET, "/api/orders/999999", Some(&user.token))
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404, "NOT_FOUND").await;
    let stream = app
        .request(
            Method::GET,
            &format!(
                "/api/orders/{id}/events?ticket={}",
                app.stream_ticket(&other.token).await
            ),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_problem(stream, 403, "FORBIDDEN").await;
}

crate::on_both_deployments!(
    an_order_runs_the_saga_to_paid_and_streams_each_status,
    a_stream_follows_a_pending_order_to_its_outcome,
    two_hundred_orders_race_for_fifty_units,
    a_refused_coupon_fails_the_order_and_releases_its_stock,
    cancelling_gives_back_stock_and_coupon,
    bad_orders_get_clear_problems_and_a_key_replays;
    deployment:
    an_unpaid_order_expires_and_gives_back_stock_and_coupon,
    every_saga_event_delivered_twice_gives_the_same_end_state,
);

/// Unpaid orders expire after the (here one-second) window and give back stock and coupon.
async fn an_unpaid_order_expires_and_gives_back_stock_and_coupon(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| {
        s.orders.payment_window_secs = 1;
        s.orders.sweep_ms = 100;
    })
    .await
    else {
        return;
    };
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (product_id, options) = app.new_product(&admin, &[(2_000, 4)]).await;
    let coupon = coupon_for(&app, &admin, &user, "FIXED", 500).await;
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 3 }], "userCouponId": coupon });
    let id = app.place_order(&user, &body).await;
    // The order's stream ends after its terminal status: wait on it.
    let statuses: Vec<Value> = status_events(&app, &user, id, None)
        .await
        .into_iter()
        .map(|(_, order)| order["status"].clone())
        .collect();
    assert_eq!(statuses.last().unwrap(), "EXPIRED", "{statuses:?}");
    app.drain_events().await;
    assert_eq!(stock(&app, product_id).await, [4]);
    assert_eq!(coupon_status(&app, &user, coupon).await, "AVAILABLE");
    let payment = app
        .post_as(&user, &format!("/api/orders/{id}/payment"))
        .await;
    assert_problem(payment, 409, "ORDER_NOT_PAYABLE").await;
}

/// With every event handled twice (the first run rolled back as by a crash), a batch of orders
/// with coupons, payments and cancels ends exactly as it would once.
async fn every_saga_event_delivered_twice_gives_the_same_end_state(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| s.bus.redeliver = true).await else {
        return;
    };
    let admin = app.new_admin().await;
    let (product_id, options) = app.new_product(&admin, &[(1_000, 20)]).await;
    let mut users = Vec::new();
    for _ in 0..6 {
        let user = app.new_user().await;
        let coupon = coupon_for(&app, &admin, &user, "FIXED", 300).await;
        charge(&app, &user, 10_000).await;
        users.push((user, coupon));
    }
    // 6 users × 5 orders of 1 unit, each user's first order with its coupon, for 20 units.
    let mut ids = Vec::new();
    for round in 0..5 {
        for (user, coupon) in &users {
            let mut body = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
            if round == 0 {
                body["userCouponId"] = json!(coupon);
            }
            ids.push((user, app.place_order(user, &body).await));
        }
    }
    app.drain_events().await;
    let mut awaiting = Vec::new();
    for (user, id) in &ids {
        match app.order(user, *id).await["status"].as_str().unwrap() {
            "AWAITING_PAYMENT" => awaiting.push((*user, *id)),
            "FAILED" => {}
            other => panic!("order {id} is {other}"),
        }
    }
    assert_eq!(awaiting.len(), 20);
    // Pay half of them, cancel the other half.
    for (i, (user, id)) in awaiting.iter().enumerate() {
        let action = if i % 2 == 0 { "payment" } else { "cancel" };
        let response = app
            .post_as(user, &format!("/api/orders/{id}/{action}"))
            .await;
        assert_eq!(response.status(), 200);
    }
    app.drain_events().await;
    assert_eq!(
        stock(&app, product_id).await,
        [10],
        "cancelled units are back once"
    );
    let mut spent = 0;
    for (user, coupon) in &users {
        let points = app
            .get_json("/api/users/me/points", Some(&user.token))
            .await["point"]
            .as_i64()
            .unwrap();
        spent += 10_000 - points;
        let status = coupon_status(&app, user, *coupon).await;
        assert!(status == "USED" || status == "AVAILABLE");
    }
    let mut paid_total = 0;
    for (user, id) in &awaiting {
        let order = app.order(user, *id).await;
        if order["status"] == "PAID" {
            paid_total += order["totalAmount"].as_i64().unwrap();
        }
    }
    assert_eq!(spent, paid_total, "each payment took its points once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_orders_come_a_page_at_a_time_with_their_total() {
    let app = spawn_with(Deployment::Embedded, |s| {
        s.orders.max_open = 100;
        s.rate.orders = 100;
    })
    .await
    .unwrap();
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (_, options) = app.new_product(&admin, &[(1_000, 100)]).await;
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
    let mut ids = Vec::new();
    for _ in 0..25 {
        ids.push(app.place_order(&user, &body).await);
    }
    ids.reverse();
    let first = app
        .get_json("/api/users/me/orders", Some(&user.token))
        .await;
    let second = app
        .get_json("/api/users/me/orders?page=1", Some(&user.token))
        .await;
    let listed: Vec<i64> = [&first, &second]
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap())
        .map(|order| order["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, ids, "every order once, newest first");
    assert_eq!(
        (first["total"].as_i64(), second["total"].as_i64()),
        (Some(25), Some(25))
    );
    assert_eq!(first["items"].as_array().unwrap().len(), 20);
    let past = app
        .get_json("/api/users/me/orders?page=9&size=100", Some(&user.token))
        .await;
    assert!(past["items"].as_array().unwrap().is_empty());
    assert_invalid(
        app.request(
            Method::GET,
            "/api/users/me/orders?size=101",
            Some(&user.token),
        )
        .send()
        .await
        .unwrap(),
        "size",
    )
    .await;
}

/// `stampede orders trace ID` tells the saga of a paid, a failed and an expired order from the
/// deployment's own records: each event and the consumer groups that applied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_command_tells_a_paid_a_failed_and_an_expired_orders_saga() {
    let app = spawn_with(Deployment::Embedded, |s| {
        s.orders.payment_window_secs = 1;
        s.orders.sweep_ms = 100;
    })
    .await
    .unwrap();
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (_, options) = app.new_product(&admin, &[(2_000, 4)]).await;
    charge(&app, &user, 10_000).await;
    let one = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });

    let paid = app.place_order(&user, &one).await;
    app.drain_events().await;
    let payment = app
        .post_as(&user, &format!("/api/orders/{paid}/payment"))
        .await;
    assert_eq!(payment.status(), 200);
    let too_many = json!({ "items": [{ "productOptionId": options[0], "quantity": 9 }] });
    let failed = app.place_order(&user, &too_many).await;
    let expired = app.place_order(&user, &one).await;
    let statuses = status_events(&app, &user, expired, None).await;
    assert_eq!(statuses.last().unwrap().1["status"], "EXPIRED");
    app.drain_events().await;

    let trace = |id: i64| {
        let out = crate::cli::stampede(&app.state.settings.data_dir)
            .args(["orders", "trace", &id.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let expectations: [(i64, &[&str]); 3] = [
        (
            paid,
            &[
                ": PAID",
                "order-created",
                "applied by catalog-reserve",
                "stock-decreased",
                "(after order-created)",
                "coupon-used",
                "applied by order-saga",
                "order-paid",
            ],
        ),
        (
            failed,
            &[
                ": FAILED (OUT_OF_STOCK)",
                "stock-decrease-failed",
                "applied by order-saga",
            ],
        ),
        (
            expired,
            &[": EXPIRED", "order-expired", "applied by catalog-release"],
        ),
    ];
    for (id, expected) in expectations {
        let shown = trace(id);
        for line in expected {
            assert!(shown.contains(line), "order {id} lacks {line:?}:\n{shown}");
        }
    }
    let missing = crate::cli::stampede(&app.state.settings.data_dir)
        .args(["orders", "trace", "999999"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no order 999999"));
}
