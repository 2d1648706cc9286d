use futures::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

async fn charging_adds_to_the_balance_and_the_history_shows_each_step(app: TestApp) {
    let user = app.new_user().await;
    let balance = |path: &'static str| {
        let request = app.request(Method::GET, path, Some(&user.token));
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(balance("/api/users/me/points").await["point"], 0);
    for amount in [10_000, 1_000_000] {
        let response = app
            .charge(&user, "me", json!({ "amount": amount }), None)
            .await;
        assert_eq!(response.status(), 200);
    }
    let body = balance("/api/users/me/points").await;
    assert_eq!(body, json!({ "userId": user.id, "point": 1_010_000 }));
    let history = balance("/api/users/me/points/history").await;
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["type"], "CHARGE");
    assert_eq!(entries[0]["amount"], 1_000_000);
    assert_eq!(entries[0]["balanceAfter"], 1_010_000, "newest first");
    assert_eq!(entries[1]["balanceAfter"], 10_000);
    assert!(entries[0].get("orderId").is_none());
}

async fn charges_outside_the_limits_or_of_the_wrong_type_are_refused(app: TestApp) {
    let user = app.new_user().await;
    for amount in [9_999, 1_000_001, 0, -5] {
        let response = app
            .charge(&user, "me", json!({ "amount": amount }), None)
            .await;
        assert_problem(response, 422, "INVALID_CHARGE_AMOUNT").await;
    }
    for body in [
        json!({ "amount": "ten" }),
        json!({}),
        json!({ "amount": 1.5 }),
    ] {
        let response = app.charge(&user, "me", body, None).await;
        assert_problem(response, 400, "VALIDATION_FAILED").await;
    }
    let too_long = "k".repeat(256);
    let response = app
        .charge(&user, "me", json!({ "amount": 10_000 }), Some(&too_long))
        .await;
    assert_problem(response, 422, "VALIDATION_FAILED").await;
    let balance = app
        .request(Method::GET, "/api/users/me/points", Some(&user.token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        balance.json::<serde_json::Value>().await.unwrap()["point"],
        0,
        "nothing charged"
    );
}

async fn a_hundred_concurrent_charges_of_one_user_add_up_exactly(app: TestApp) {
    let user = app.new_user().await;
    let charges = (0..100).map(|_| app.charge(&user, "me", json!({ "amount": 10_000 }), None));
    for response in join_all(charges).await {
        assert_eq!(response.status(), 200);
    }
    let balance = points::balance::balance(&app.state.db, user.id)
        .await
        .unwrap();
    assert_eq!(balance, 1_000_000);
    let history = points::balance::history(&app.state.db, user.id)
        .await
        .unwrap();
    assert_eq!(history.len(), 100);
    let mut afters: Vec<i64> = history.iter().map(|e| e.balance_after).collect();
    afters.sort_unstable();
    assert_eq!(
        afters,
        (1..=100).map(|n| n * 10_000).collect::<Vec<_>>(),
        "no lost update"
    );
}

async fn ten_concurrent_requests_with_one_idempotency_key_charge_once(app: TestApp) {
    let user = app.new_user().await;
    let requests =
        (0..10).map(|_| app.charge(&user, "me", json!({ "amount": 30_000 }), Some("charge-1")));
    let mut bodies = Vec::new();
    for response in join_all(requests).await {
        assert_eq!(response.status(), 200);
        bodies.push(response.json::<serde_json::Value>().await.unwrap());
    }
    assert!(
        bodies
            .iter()
            .all(|b| *b == json!({ "userId": user.id, "point": 30_000 })),
        "{bodies:?}"
    );
    assert_eq!(
        points::balance::balance(&app.state.db, user.id)
            .await
            .unwrap(),
        30_000
    );

    let later = app
        .charge(&user, "me", json!({ "amount": 30_000 }), Some("charge-1"))
        .await;
    assert_eq!(later.headers()["idempotent-replayed"], "true");
    let reused = app
        .charge(&user, "me", json!({ "amount": 40_000 }), Some("charge-1"))
        .await;
    assert_problem(reused, 422, "IDEMPOTENCY_KEY_REUSED").await;
    let other_key = app
        .charge(&user, "me", json!({ "amount": 30_000 }), Some("charge-2"))
        .await;
    assert_eq!(
        other_key.json::<serde_json::Value>().await.unwrap()["point"],
        60_000
    );
}

async fn every_user_route_enforces_who_may_call_it(app: TestApp) {
    let owner = app.new_user().await;
    let other = app.new_user().await;
    let admin = app.new_admin().await;
    let id = owner.id;
    let routes = [
        (Method::GET, format!("/api/users/{id}"), None),
        (Method::GET, format!("/api/users/{id}/points"), None),
        (Method::GET, format!("/api/users/{id}/points/history"), None),
        (
            Method::POST,
            format!("/api/users/{id}/points/charge"),
            Some(json!({ "amount": 10_000 })),
        ),
    ];
    let callers = [
        ("no token", None, 401),
        ("bad token", Some("not-a-token".to_owned()), 401),
        ("other user", Some(other.token.clone()), 403),
        ("owner", Some(owner.token.clone()), 200),
        ("admin", Some(admin.token.clone()), 200),
    ];
    for (method, path, body) in &routes {
        for (who, token, expected) in &callers {
            let mut request = app.request(method.clone(), path, token.as_deref());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status().as_u16(),
                *expected,
                "{method} {path} as {who}"
            );
            if *expected >= 400 {
                let code = if *expected == 401 {
                    "UNAUTHORIZED"
                } else {
                    "FORBIDDEN"
                };
                assert_problem(response, *expected, code).await;
            }
        }
    }
    let missing = app
        .request(
            Method::GET,
            "/api/users/999999999/points",
            Some(&admin.token),
        )
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404, "NOT_FOUND").await;
}

crate::on_both_deployments!(
    charging_adds_to_the_balance_and_the_history_shows_each_step,
    charges_outside_the_limits_or_of_the_wrong_type_are_refused,
    a_hundred_concurrent_charges_of_one_user_add_up_exactly,
    ten_concurrent_requests_with_one_idempotency_key_charge_once,
    every_user_route_enforces_who_may_call_it,
);
