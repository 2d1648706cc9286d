use crate::helpers::{assert_problem, TestApp};

async fn unknown_routes_and_methods_are_problems(app: TestApp) {
    assert_problem(app.get("/api/nothing-here").await, 404, "NOT_FOUND").await;
    let wrong_method = app.post_json("/health/live", &serde_json::json!({})).await;
    assert_problem(wrong_method, 405, "METHOD_NOT_ALLOWED").await;
}

async fn metrics_count_requests_per_route_and_show_the_outbox(app: TestApp) {
    app.get("/health/live").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"stampede_http_requests_total{method="GET",route="/health/live",status="200"}"#
        ),
        "{text}"
    );
    assert!(text.contains("stampede_http_request_duration_seconds_bucket"));
    assert!(text.contains("stampede_outbox_backlog"));
}

/// What an operator watches during a sale: open orders by status, each saga hop's delay per
/// consumer group (a histogram, so instances add up), dead letters pending, pool use.
async fn metrics_show_open_orders_hop_delays_dead_letters_and_connections(app: TestApp) {
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (_, options) = app.new_product(&admin, &[(1_000, 5)]).await;
    let items = serde_json::json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
    app.place_order(&user, &items).await;
    app.drain_events().await;
    let mut tx = app.state.db.begin().await.unwrap();
    let event = uuid::Uuid::now_v7();
    db::exec!(
        tx,
        "INSERT INTO dead_letters (consumer, event_id, topic, envelope, error, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        "metrics-test-group",
        event,
        "order-created",
        sqlx::types::Json(serde_json::json!({})),
        "boom",
        5
    )
    .unwrap();
    tx.commit().await.unwrap();

    let text = app.get("/metrics").await.text().await.unwrap();
    for expected in [
        r#"stampede_orders_open{status="AWAITING_PAYMENT"}"#,
        r#"stampede_event_delay_seconds_bucket{consumer="order-saga",topic="coupon-used",le="0.1"}"#,
        r#"stampede_dead_letters_pending{consumer="metrics-test-group"} 1"#,
        r#"stampede_db_connections{state="busy"}"#,
        "# HELP stampede_event_delay_seconds",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    for sample in text.lines().filter(|l| l.starts_with("stampede_")) {
        let name = sample.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| text.contains(&format!("# TYPE {family} histogram")))
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no help text"
        );
    }
}

async fn the_openapi_document_and_docs_page_are_served_offline(app: TestApp) {
    let doc: serde_json::Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/api/products",
        "/api/products/{productId}",
        "/api/products/popular",
        "/api/admin/products",
        "/api/admin/product-options/{optionId}/restock",
        "/api/admin/coupons",
        "/api/coupons/{couponId}",
        "/api/coupons/{couponId}/issue",
        "/api/coupon-tasks/{taskId}",
        "/api/coupon-tasks/{taskId}/events",
        "/api/users/{userId}/coupons",
        "/api/orders",
        "/api/orders/{orderId}",
        "/api/orders/{orderId}/events",
        "/api/orders/{orderId}/payment",
        "/api/orders/{orderId}/cancel",
        "/api/users/{userId}/orders",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "a browsable page");
    assert!(!html.contains("src=\"http"), "no script from the internet");
    let script = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), 200, "assets are embedded");
}

async fn responses_carry_a_request_id_the_clients_own_only_when_short_and_plain(app: TestApp) {
    let response = app.get("/health/live").await;
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let asked = |id: String| {
        app.request(reqwest::Method::GET, "/health/live", None)
            .header("x-request-id", id)
            .send()
    };
    let kept = asked("checkout-42.retry:1".into()).await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "checkout-42.retry:1");
    for strange in [
        "two words".to_owned(),
        "<script>".to_owned(),
        "x".repeat(65),
    ] {
        let replaced = asked(strange.clone()).await.unwrap();
        let id = replaced.headers()["x-request-id"].to_str().unwrap();
        assert!(id != strange && id.len() == 36, "{strange:?} → {id}");
    }
}

crate::on_both_deployments!(
    unknown_routes_and_methods_are_problems,
    metrics_count_requests_per_route_and_show_the_outbox,
    metrics_show_open_orders_hop_delays_dead_letters_and_connections,
    the_openapi_document_and_docs_page_are_served_offline,
    responses_carry_a_request_id_the_clients_own_only_when_short_and_plain,
);
