//! The operations page in headless Chromium, driven through chromedriver (W3C WebDriver, plain
//! HTTP): an admin signs in on the page, orders are paid and a coupon drop runs, and the page's
//! numbers follow without a reload. The last view is kept as `ops-page.png` in Cargo's test scratch
//! directory (`target/tmp/`). CI installs
//! Debian's `chromium` and `chromium-driver`; elsewhere the test says it did not run.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::{browser::Browser, helpers::spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_page_signs_an_admin_in_and_follows_orders_and_a_coupon_drop_live() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let email = format!("ops{}@example.com", crate::helpers::unique());
    points::users::create_admin(&app.state.db, &email, "ops-password", "ops")
        .await
        .unwrap();
    let admin = app.new_admin().await;

    browser.open(&format!("{}/ops", app.address)).await;
    browser.type_into("#email", &email).await;
    browser.type_into("#password", "ops-password").await;
    browser.click("#login button").await;
    browser.wait_for_text("#status", "live").await;
    browser.wait_for_text("#orders-PAID", "0").await;

    // Two paid orders and a drop of five coupons, three taken.
    let (_, options) = app.new_product(&admin, &[(1_000, 10)]).await;
    let coupon = app.new_coupon(&admin, 5, Duration::from_secs(3600)).await;
    for _ in 0..3 {
        let user = app.new_user().await;
        let asked = app
            .post_as(&user, &format!("/api/coupons/{coupon}/issue"))
            .await;
        assert_eq!(asked.status(), 202);
    }
    let buyer = app.new_user().await;
    app.charge(&buyer, "me", json!({ "amount": 10_000 }), None)
        .await;
    for _ in 0..2 {
        let one = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
        let id = app.place_order(&buyer, &one).await;
        app.drain_events().await;
        let paid = app
            .post_as(&buyer, &format!("/api/orders/{id}/payment"))
            .await;
        assert_eq!(paid.status(), 200);
    }

    browser.wait_for_text("#orders-PAID", "2").await;
    browser
        .wait_for_text(&format!("#coupon-{coupon}-issued"), "3")
        .await;
    browser
        .wait_for_text(&format!("#coupon-{coupon}-remaining"), "2")
        .await;
    browser.wait_for_text("#requests-accepted", "3").await;
    // A waiting room in front of another drop: its line on the page.
    let guarded = app.new_coupon(&admin, 5, Duration::from_secs(3600)).await;
    let opens_in = chrono::Duration::minutes(10);
    let room = app
        .new_room(&admin, json!({"couponId": guarded}), opens_in, 5)
        .await;
    let room = room["id"].as_i64().unwrap();
    for user in 0..4 {
        let (status, _) = app.join_room(&app.token_for(9_000 + user), room).await;
        assert_eq!(status, 201);
    }
    browser
        .wait_for_text(&format!("#room-{room}-waiting"), "4")
        .await;
    let script = format!("document.getElementById('room-{room}').scrollIntoView(); return 1;");
    browser
        .call(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rooms = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops-page-rooms.png");
    browser.screenshot(&rooms).await;
    // Cargo's scratch directory for integration tests, wherever the target directory is.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops-page.png");
    browser.screenshot(&shot).await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    browser.call(Method::DELETE, "", None).await;
}

/// The page holds no data; its stream is for admins only.
#[tokio::test]
async fn the_operations_stream_is_for_admins_only() {
    let app = spawn_app().await;
    let page = app.get("/ops").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("EventSource"));
    let anonymous = app.get("/api/admin/ops/events").await;
    crate::helpers::assert_problem(anonymous, 401, "UNAUTHORIZED").await;
    let user = app.new_user().await;
    let path = format!(
        "/api/admin/ops/events?ticket={}",
        app.stream_ticket(&user.token).await
    );
    crate::helpers::assert_problem(app.get(&path).await, 403, "FORBIDDEN").await;
    let admin = app.new_admin().await;
    // A bearer token never goes in a URL: only a ticket does, and opens one stream.
    let in_url = format!("/api/admin/ops/events?access_token={}", admin.token);
    crate::helpers::assert_problem(app.get(&in_url).await, 401, "UNAUTHORIZED").await;
    let ticket = app.stream_ticket(&admin.token).await;
    let with_ticket = format!("/api/admin/ops/events?ticket={ticket}");
    let opened = app.get(&with_ticket).await;
    assert_eq!(opened.status(), 200);
    drop(opened);
    crate::helpers::assert_problem(app.get(&with_ticket).await, 401, "UNAUTHORIZED").await;
    let mut stream = app
        .request(Method::GET, "/api/admin/ops/events", Some(&admin.token))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.starts_with("event: snapshot"), "{first}");
    assert!(first.contains("\"outboxBacklog\""), "{first}");
}
