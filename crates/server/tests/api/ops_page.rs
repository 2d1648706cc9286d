//! The operations page in headless Chromium, driven through chromedriver (W3C WebDriver, plain
//! HTTP): an admin signs in on the page, orders are paid and a coupon drop runs, and the page's
//! numbers follow without a reload. The last view is kept as `ops-page.png` in Cargo's test scratch
//! directory (`target/tmp/`). CI installs
//! Debian's `chromium` and `chromium-driver`; elsewhere the test says it did not run.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{helpers::spawn_app, process::free_port};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    /// A headless Chromium session, or `None` (off CI) when chromedriver is not installed.
    async fn start() -> Option<Self> {
        let port = free_port();
        let driver = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(driver) => driver,
            Err(error) if std::env::var_os("CI").is_none() => {
                eprintln!("chromedriver not found ({error}): the page test did NOT run (apt-get install chromium chromium-driver)");
                return None;
            }
            Err(error) => panic!("chromedriver is required on CI: {error}"),
        };
        let (base, http) = (format!("http://127.0.0.1:{port}"), reqwest::Client::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,1000",
        ];
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "args": args },
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Some(Self {
            driver,
            base,
            session,
            http,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        reply["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The element `css` selects, once it exists.
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .call(
                    Method::POST,
                    "/element",
                    Some(json!({ "using": "css selector", "value": css })),
                )
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no {css} on the page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        let path = format!("/element/{element}/value");
        self.call(Method::POST, &path, Some(json!({ "text": text })))
            .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let path = format!("/element/{element}/click");
        self.call(Method::POST, &path, Some(json!({}))).await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let text = self
            .call(Method::GET, &format!("/element/{element}/text"), None)
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `css` is `expected`; the page updates itself, nothing reloads.
    async fn wait_for_text(&self, css: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text(css).await;
            if text == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} shows {text:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let png = self.call(Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

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
