use crate::helpers::{assert_problem, TestApp};

async fn the_app_is_live_and_ready_with_every_part_up(app: TestApp) {
    assert_eq!(app.get("/health/live").await.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    for part in ["database", "cache", "bus"] {
        assert_eq!(body["checks"][part], "UP", "{body}");
    }
    app.stop().await.unwrap();
}

async fn readiness_names_the_database_when_it_is_down(app: TestApp) {
    assert_eq!(app.get("/health/ready").await.status(), 200);
    app.state.db.close().await;
    let body = assert_problem(app.get("/health/ready").await, 503, "UNAVAILABLE").await;
    assert!(
        body["detail"].as_str().unwrap().contains("database"),
        "{body}"
    );
    assert_eq!(body["checks"]["database"], "DOWN");
    assert_eq!(body["checks"]["cache"], "UP");
    assert_eq!(app.get("/health/live").await.status(), 200);
}

crate::on_both_deployments!(
    the_app_is_live_and_ready_with_every_part_up,
    readiness_names_the_database_when_it_is_down,
);
