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
    the_openapi_document_and_docs_page_are_served_offline,
    responses_carry_a_request_id_the_clients_own_only_when_short_and_plain,
);
