use crate::helpers::{assert_problem, TestApp};

/// Live at once; ready once every part is up and the consumers hold their partitions: until
/// then (a few seconds on Kafka) readiness names the consumer groups still joining.
async fn the_app_is_live_and_ready_with_every_part_up(app: TestApp) {
    assert_eq!(app.get("/health/live").await.status(), 200);
    let (refused, body) = app.wait_ready().await;
    if let Some(refused) = refused {
        let consumers = refused["checks"]["consumers"].as_str().unwrap_or_default();
        assert!(consumers.starts_with("JOINING: "), "{refused}");
        assert!(
            refused["detail"].as_str().unwrap().contains("consumers"),
            "{refused}"
        );
    }
    for part in ["database", "cache", "bus", "consumers"] {
        assert_eq!(body["checks"][part], "UP", "{body}");
    }
    app.stop().await.unwrap();
}

async fn readiness_names_the_database_when_it_is_down(app: TestApp) {
    app.wait_ready().await;
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
