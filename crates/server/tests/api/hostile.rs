//! What a hostile crowd tries, and how the server holds: logins that lock another out, sign-up
//! floods, oversized emails, credentials in URLs, framing, made-up stream positions, scrape
//! floods and idle connections. Clients on other loopback addresses (127.0.0.2, …) stand for
//! other people.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{
    assert_invalid, assert_problem, spawn_with, unique, Deployment, TestApp, TestUser,
};

/// A client whose connections come from `127.0.0.{last}`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .unwrap()
}

async fn login(app: &TestApp, client: &reqwest::Client, email: &str, password: &str) -> u16 {
    client
        .post(format!("{}/api/auth/token", app.address))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An app whose failed logins are limited to `per_address` per email and address and
/// `per_email` per email (a minute's window), and the email of an account on it whose password
/// is `right-pass`.
async fn with_an_account(
    deployment: Deployment,
    per_address: u64,
    per_email: u64,
) -> Option<(TestApp, String)> {
    let app = spawn_with(deployment, |s| {
        s.rate.logins = per_address;
        s.rate.logins_per_email = per_email;
        s.rate.window_secs = 60;
    })
    .await?;
    let email = format!("owner{}@example.com", unique());
    let signed_up = app.sign_up("owner", &email, "right-pass").await;
    assert_eq!(signed_up.status(), 201);
    Some((app, email))
}

/// Someone failing logins from another address cannot lock the owner out, and the owner's own
/// logins that succeed are never counted; failures from the owner's address are.
async fn a_stranger_failing_logins_cannot_lock_the_owner_out(deployment: Deployment) {
    let Some((app, email)) = with_an_account(deployment, 3, 100).await else {
        return;
    };
    let (stranger, owner) = (client_from(2), client_from(1));
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(login(&app, &stranger, &email, "wrong-pass").await);
    }
    assert_eq!(answers, [401, 401, 401, 429, 429, 429]);
    for _ in 0..6 {
        assert_eq!(
            login(&app, &owner, &email, "right-pass").await,
            200,
            "the owner logs in, however often"
        );
    }
    for _ in 0..3 {
        assert_eq!(login(&app, &owner, &email, "typo-pass").await, 401);
    }
    assert_eq!(
        login(&app, &owner, &email, "right-pass").await,
        429,
        "the owner's own failures count"
    );
}

/// Many addresses together still meet the looser limit per email.
async fn failures_from_many_addresses_meet_the_limit_per_email(deployment: Deployment) {
    let Some((app, email)) = with_an_account(deployment, 3, 4).await else {
        return;
    };
    let mut answers = Vec::new();
    for last in 2..8 {
        answers.push(login(&app, &client_from(last), &email, "wrong-pass").await);
    }
    assert_eq!(answers, [401, 401, 401, 401, 429, 429]);
}

/// Sign-ups are counted per address; `X-Forwarded-For` is believed only from a trusted proxy.
async fn sign_ups_are_limited_per_address(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| {
        s.rate.signups = 2;
        s.rate.window_secs = 60;
        s.http.trusted_proxies = "127.0.0.9".into();
    })
    .await
    else {
        return;
    };
    let sign_up = |client: reqwest::Client, forwarded: Option<&'static str>| {
        let url = format!("{}/api/users", app.address);
        async move {
            let mut request = client.post(url).json(&json!({
                "name": "crowd",
                "email": format!("c{}@example.com", unique()),
                "password": "pass-word"
            }));
            if let Some(forwarded) = forwarded {
                request = request.header("x-forwarded-for", forwarded);
            }
            request.send().await.unwrap()
        }
    };
    assert_eq!(sign_up(client_from(3), None).await.status(), 201);
    assert_eq!(sign_up(client_from(3), Some("1.1.1.1")).await.status(), 201);
    let third = sign_up(client_from(3), Some("2.2.2.2")).await;
    assert!(third.headers().contains_key("retry-after"));
    assert_problem(third, 429, "RATE_LIMITED").await;
    assert_eq!(sign_up(client_from(4), None).await.status(), 201);
    for _ in 0..2 {
        let through_proxy = sign_up(client_from(9), Some("6.6.6.6, 10.0.0.5")).await;
        assert_eq!(
            through_proxy.status(),
            201,
            "each forwarded client counts alone"
        );
    }
    let over = sign_up(client_from(9), Some("10.0.0.5")).await;
    assert_problem(over, 429, "RATE_LIMITED").await;
    assert_eq!(
        sign_up(client_from(9), Some("10.0.0.6")).await.status(),
        201
    );
}

/// A login email that is no address (60 KB of it) is refused before anything is counted or
/// kept under it: the in-process cache holds no more entries afterwards.
#[tokio::test]
async fn a_login_with_an_email_that_is_no_address_is_refused_before_anything_is_kept() {
    let app = crate::helpers::spawn_app().await;
    let cache::Cache::Memory(memory) = &app.state.cache else {
        unreachable!("the embedded deployment")
    };
    let (before, _) = memory.size();
    let huge = format!("{}@example.com", "a".repeat(60_000));
    for n in 0..50 {
        let response = app.token(&format!("{n}{huge}"), "pass-word").await;
        assert_invalid(response, "email").await;
    }
    assert_invalid(app.token("not-an-email", "pass-word").await, "email").await;
    assert_invalid(app.token("a@b.co", &"p".repeat(31)).await, "password").await;
    assert_eq!(
        memory.size().0,
        before,
        "nothing was kept for the refused logins"
    );
}

/// A new user and an order of theirs, just placed.
async fn a_pending_order(app: &TestApp) -> (TestUser, i64) {
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (_, options) = app.new_product(&admin, &[(1_000, 5)]).await;
    let line = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
    let id = app.place_order(&user, &line).await;
    (user, id)
}

/// A bearer token is never taken from a URL; a stream ticket is, once, and is no bearer token.
async fn a_stream_opens_with_a_ticket_once_and_never_with_a_token_in_the_url(app: TestApp) {
    let (user, id) = a_pending_order(&app).await;
    let path = format!("/api/orders/{id}/events");
    let in_url = app
        .get(&format!("{path}?access_token={}", user.token))
        .await;
    assert_problem(in_url, 401, "UNAUTHORIZED").await;
    let ticket = app.stream_ticket(&user.token).await;
    let as_token = app
        .request(Method::GET, &path, Some(&ticket))
        .send()
        .await
        .unwrap();
    assert_problem(as_token, 401, "UNAUTHORIZED").await;
    let first = app.get(&format!("{path}?ticket={ticket}")).await;
    assert_eq!(first.status(), 200);
    drop(first);
    let again = app.get(&format!("{path}?ticket={ticket}")).await;
    assert_problem(again, 401, "UNAUTHORIZED").await;
}

/// A `Last-Event-ID` past the order's newest change is taken as the newest: the stream follows
/// the order and ends with it, instead of waiting forever for a change that never comes.
async fn a_stream_resumed_past_the_newest_change_still_ends_with_the_order(app: TestApp) {
    let (user, id) = a_pending_order(&app).await;
    let response = app
        .request(
            Method::GET,
            &format!("/api/orders/{id}/events"),
            Some(&user.token),
        )
        .header("Last-Event-ID", "999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cancel = app
        .post_as(&user, &format!("/api/orders/{id}/cancel"))
        .await;
    assert_eq!(cancel.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("the stream ends once the order has ended")
        .unwrap();
    let statuses: Vec<String> = crate::helpers::sse_events(&text)
        .into_iter()
        .filter(|e| e.event == "status")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["status"].to_string())
        .collect();
    assert_eq!(statuses.last().map(String::as_str), Some("\"CANCELLED\""));
}

/// The pages that run in a browser allow only their own code and cannot be framed.
#[tokio::test]
async fn the_pages_forbid_framing_and_scripts_from_elsewhere() {
    let app = crate::helpers::spawn_app().await;
    for path in ["/ops", "/docs/"] {
        let page = app.get(path).await;
        assert_eq!(page.status(), 200, "{path}");
        let policy = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(
            !policy.contains("'unsafe-inline'") || path != "/ops",
            "{policy}"
        );
        assert_eq!(page.headers()["x-frame-options"], "DENY");
    }
    let api = app.get("/api/products").await;
    assert!(!api.headers().contains_key("content-security-policy"));
}

/// However many scrapes come at once, the database's figures are read at most once a second.
async fn a_scrape_flood_reads_the_database_at_most_once_a_second(app: TestApp) {
    let before = app.state.metrics_refresh.count();
    let scrapes = (0..40).map(|_| app.get("/metrics"));
    for response in futures::future::join_all(scrapes).await {
        assert_eq!(response.status(), 200);
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("stampede_outbox_backlog"));
    }
    let refreshes = app.state.metrics_refresh.count() - before;
    assert!((1..=2).contains(&refreshes), "{refreshes} refreshes");
}

/// An HTTP/2 connection that carries nothing is closed, as an idle HTTP/1.1 keep-alive one is.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let app = crate::helpers::spawn_with(Deployment::Embedded, |s| {
        s.http.header_timeout_ms = 200;
        s.http.request_timeout_ms = 200;
    })
    .await
    .unwrap();
    let address = app.address.trim_start_matches("http://");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    // The client preface and an empty SETTINGS frame; then silence.
    connection
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        connection.read_to_end(&mut received),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(_))),
        "the server closed the idle connection"
    );
    assert!(!received.is_empty(), "it spoke HTTP/2 first (SETTINGS)");
}

crate::on_both_deployments!(
    a_stream_opens_with_a_ticket_once_and_never_with_a_token_in_the_url,
    a_stream_resumed_past_the_newest_change_still_ends_with_the_order,
    a_scrape_flood_reads_the_database_at_most_once_a_second;
    deployment:
    a_stranger_failing_logins_cannot_lock_the_owner_out,
    failures_from_many_addresses_meet_the_limit_per_email,
    sign_ups_are_limited_per_address,
);
