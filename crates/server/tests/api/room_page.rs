//! The waiting room's page in headless Chromium: a shopper signs in, joins behind three
//! others, watches the position fall without a reload, and once admitted presses the button
//! that asks for the coupon and sees it issued. The views are kept as `room-page-*.png` in
//! Cargo's test scratch directory (`target/tmp/`).

use reqwest::Method;
use serde_json::json;

use crate::{browser::Browser, helpers::spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_joins_watches_the_line_move_and_gets_the_coupon_once_admitted() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    // Paused while three others line up ahead of the shopper.
    let room = app.paused_room(&admin, 10).await;
    for user in 0..3 {
        let (status, _) = app.join_room(&app.token_for(7_000 + user), room).await;
        assert_eq!(status, 201);
    }
    let email = format!("shopper{}@example.com", crate::helpers::unique());
    assert_eq!(
        app.sign_up("Shopper", &email, "shopper-pass-1")
            .await
            .status(),
        201
    );

    browser.open(&format!("{}/rooms/{room}", app.address)).await;
    browser.type_into("#email", &email).await;
    browser.type_into("#password", "shopper-pass-1").await;
    browser.click("#login button").await;
    browser.wait_for_text("#join", "Join the line").await;
    browser.click("#join").await;
    browser.wait_for_text("#position", "4").await;
    let scratch = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    browser
        .screenshot(&scratch.join("room-page-waiting.png"))
        .await;

    let resumed = app
        .change_room(&admin, room, json!({ "paused": false }))
        .await;
    assert_eq!(resumed.0, 200);
    browser.wait_for_text("#position", "2").await;
    browser.wait_for_text("#status", "It is your turn.").await;
    browser.wait_for_text("#act", "Get the coupon").await;
    browser.click("#act").await;
    browser
        .wait_for_text("#result", "The coupon is yours.")
        .await;
    browser
        .screenshot(&scratch.join("room-page-done.png"))
        .await;
    browser.call(Method::DELETE, "", None).await;
}
