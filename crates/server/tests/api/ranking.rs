//! Popular products over HTTP: only paid units count, each sale once (every event delivered
//! twice here), best first with ties by product id, and a ranking rebuilt from the paid orders
//! (automatically after the cache lost it, and by the operator's rebuild) equals the live one.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_invalid, spawn_with, Deployment, TestApp, TestUser};

/// Places an order of `(option, quantity)` lines as `user`; its id once the saga priced it.
async fn priced_order(app: &TestApp, user: &TestUser, lines: &[(i64, i64)]) -> i64 {
    let items: Vec<Value> = lines
        .iter()
        .map(|(option, quantity)| json!({ "productOptionId": option, "quantity": quantity }))
        .collect();
    let response = app
        .request(Method::POST, "/api/orders", Some(&user.token))
        .json(&json!({ "items": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    app.drain_events().await;
    id
}

async fn act(app: &TestApp, user: &TestUser, id: i64, action: &str) {
    let response = app
        .request(
            Method::POST,
            &format!("/api/orders/{id}/{action}"),
            Some(&user.token),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{action} order {id}");
}

/// `(productId, soldQuantity)` of `GET /api/products/popular?{query}`, best first, checking
/// the ranks and that names and categories come along.
async fn popular(app: &TestApp, query: &str) -> Vec<(i64, i64)> {
    let response = app.get(&format!("/api/products/popular?{query}")).await;
    assert_eq!(response.status(), 200);
    let body: Vec<Value> = response.json().await.unwrap();
    body.iter()
        .enumerate()
        .map(|(n, p)| {
            assert_eq!(p["rank"], n + 1, "{p}");
            assert_eq!(
                (&p["name"], &p["category"]),
                (&json!("Trail runner"), &json!("shoes"))
            );
            (
                p["productId"].as_i64().unwrap(),
                p["soldQuantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn only_paid_units_count_and_a_rebuild_matches_the_live_ranking(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| {
        s.ranking.popular_cache_ms = 0;
        s.bus.redeliver = true;
    })
    .await
    else {
        return;
    };
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let response = app
        .charge(&user, "me", json!({ "amount": 1_000_000 }), None)
        .await;
    assert_eq!(response.status(), 200);
    let mut products = Vec::new();
    for _ in 0..5 {
        products.push(app.new_product(&admin, &[(1_000, 100), (2_000, 100)]).await);
    }
    let [(a, a_options), (b, b_options), (c, c_options), (d, d_options), (_, e_options)] =
        <[_; 5]>::try_from(products).unwrap();

    // Paid: A 3, B 2 + 3 over two options and orders, C 1, D 3 (ties with A).
    for lines in [
        vec![(a_options[0], 3)],
        vec![(b_options[0], 2), (b_options[1], 3), (c_options[0], 1)],
        vec![(d_options[1], 3)],
    ] {
        let id = priced_order(&app, &user, &lines).await;
        act(&app, &user, id, "payment").await;
    }
    // Not paid: awaiting payment, cancelled.
    priced_order(&app, &user, &[(c_options[0], 40)]).await;
    let cancelled = priced_order(&app, &user, &[(e_options[0], 50), (a_options[1], 9)]).await;
    act(&app, &user, cancelled, "cancel").await;
    app.drain_events().await;

    // Two days, so that a run across midnight still sees today's sales.
    let live = popular(&app, "days=2&limit=10").await;
    assert_eq!(live, [(b, 5), (a, 3), (d, 3), (c, 1)]);
    assert_eq!(
        popular(&app, "").await,
        live,
        "defaults: 3 days, 5 products"
    );
    assert_eq!(popular(&app, "days=30&limit=2").await, [(b, 5), (a, 3)]);

    // The cache loses the counts (a Redis flush, a new embedded process): the next read
    // rebuilds them from the paid orders.
    ranking::rebuild::forget(&app.state.ranking).await.unwrap();
    assert_eq!(popular(&app, "days=2&limit=10").await, live);
    // The operator's rebuild drops and recounts the five paid lines; sold again, they keep
    // counting once.
    match deployment {
        Deployment::Production => {
            let rebuilt = rebuild_command(&app);
            assert!(
                rebuilt.contains("ranking rebuilt: 5 paid order lines counted"),
                "{rebuilt}"
            );
        }
        Deployment::Embedded => {
            let counted = ranking::rebuild::rebuild_from_scratch(&app.state.ranking, |_| {}).await;
            assert_eq!(counted.unwrap(), 5);
        }
    }
    assert_eq!(popular(&app, "days=2&limit=10").await, live);
    let id = priced_order(&app, &user, &[(c_options[1], 4)]).await;
    act(&app, &user, id, "payment").await;
    app.drain_events().await;
    assert_eq!(
        popular(&app, "days=2&limit=10").await,
        [(b, 5), (c, 5), (a, 3), (d, 3)]
    );
}

/// Runs `stampede ranking rebuild` on `app`'s database schema and cache prefix; its output.
fn rebuild_command(app: &TestApp) -> String {
    use secrecy::ExposeSecret;
    let settings = &app.state.settings;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(["ranking", "rebuild"])
        .env("STAMPEDE_DATABASE_URL", settings.database_url())
        .env(
            "STAMPEDE_DATABASE_SCHEMA",
            settings.database.schema.as_deref().unwrap(),
        )
        .env("STAMPEDE_CACHE_URL", settings.cache.url.expose_secret())
        .env("STAMPEDE_CACHE_PREFIX", &settings.cache.prefix)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

async fn out_of_range_queries_get_problems(app: TestApp) {
    for (query, field) in [
        ("days=0", "days"),
        ("days=31", "days"),
        ("limit=0", "limit"),
        ("days=3&limit=101", "limit"),
    ] {
        assert_invalid(
            app.get(&format!("/api/products/popular?{query}")).await,
            field,
        )
        .await;
    }
    let response = app.get("/api/products/popular?days=three").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = app.get("/api/products/popular?days=30&limit=100").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!([]));
}

crate::on_both_deployments!(
    out_of_range_queries_get_problems;
    deployment: only_paid_units_count_and_a_rebuild_matches_the_live_ranking,
);
