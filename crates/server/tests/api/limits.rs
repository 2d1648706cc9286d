//! The limits that keep a crowd from taking the server down: timeouts, shedding, body size,
//! streams, rates, open orders, and numbers at their edges.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::helpers::{
    assert_invalid, assert_problem, spawn_with, unique, Deployment, TestApp, TestUser,
};

async fn app_with(configure: impl FnOnce(&mut server::Settings)) -> TestApp {
    spawn_with(Deployment::Embedded, configure).await.unwrap()
}

fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Opens a connection, writes `head` and leaves the request unfinished.
async fn unfinished(app: &TestApp, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(host(app)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// A sign-up whose body is still on its way: the request holds its place until it is sent.
async fn slow_sign_up(app: &TestApp) -> TcpStream {
    unfinished(
        app,
        "POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: 80\r\n\r\n{\"name\":",
    )
    .await
}

#[tokio::test]
async fn a_request_that_hangs_mid_headers_is_closed_after_the_timeout() {
    let app = app_with(|s| s.http.header_timeout_ms = 300).await;
    let mut stream = unfinished(&app, "GET /health/li").await;
    let mut buffer = Vec::new();
    // Closed (or reset) well before the 10 s this waits.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer))
        .await
        .expect("the server closed the connection");
    // The server still answers others.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_shed_with_503_overloaded() {
    let app = app_with(|s| s.http.max_in_flight = 1).await;
    let held = slow_sign_up(&app).await;
    // The held request is in flight once its head is parsed; the probe retries until then.
    let shed = loop {
        let response = app.get("/api/products").await;
        if response.status() == 503 {
            break response;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_problem(shed, 503, "OVERLOADED").await;
    assert_eq!(
        app.get("/health/live").await.status(),
        200,
        "health is never shed"
    );
    drop(held);
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_503_unavailable() {
    let app = app_with(|s| s.http.request_timeout_ms = 300).await;
    let mut held = slow_sign_up(&app).await;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), held.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"UNAVAILABLE\""), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_before_they_are_read() {
    let app = app_with(|s| s.http.body_limit_bytes = 4096).await;
    // A huge declared length is refused at once, without waiting for the body.
    let mut stream = unfinished(
        &app,
        "POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: 10000000000\r\n\r\n",
    )
    .await;
    let mut head = vec![0; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head))
        .await
        .expect("answered without the body")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("PAYLOAD_TOO_LARGE"), "{head}");
    // A streamed body past the limit is cut off at the limit.
    let chunks =
        futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(bytes_of(&" ".repeat(1024)))));
    let response = app
        .client
        .post(format!("{}/api/users", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE").await;
}

fn bytes_of(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

#[tokio::test]
async fn admin_routes_decide_who_may_call_before_reading_the_body() {
    let app = app_with(|_| {}).await;
    let user = app.new_user().await;
    for path in [
        "/api/admin/products",
        "/api/admin/coupons",
        "/api/admin/product-options/1/restock",
    ] {
        let malformed = app
            .request(Method::POST, path, Some(&user.token))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_problem(malformed, 403, "FORBIDDEN").await;
        let anonymous = app
            .request(Method::POST, path, None)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_problem(anonymous, 401, "UNAUTHORIZED").await;
    }
}

#[tokio::test]
async fn made_up_methods_are_counted_as_other() {
    let app = app_with(|_| {}).await;
    let method = format!("M{}", &unique()[..6]).to_uppercase();
    let response = app
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            "/api/products",
            None,
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, 405, "METHOD_NOT_ALLOWED").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains(&method), "{method} became a label");
    assert!(metrics.contains("method=\"other\""));
}

#[tokio::test]
async fn unknown_tasks_and_orders_get_404_and_leave_no_subscription() {
    let app = app_with(|_| {}).await;
    let user = app.new_user().await;
    let before = app.state.cache.subscribed_channels();
    for _ in 0..20 {
        let task = uuid::Uuid::new_v4();
        let response = app.get(&format!("/api/coupon-tasks/{task}/events")).await;
        assert_problem(response, 404, "NOT_FOUND").await;
        let response = app
            .request(Method::GET, "/api/orders/987654/events", Some(&user.token))
            .send()
            .await
            .unwrap();
        assert_problem(response, 404, "NOT_FOUND").await;
    }
    assert_eq!(app.state.cache.subscribed_channels(), before);
}

/// A new user holding `count` orders of one unit of a new product; the user, the orders and
/// the product's option.
async fn orders_of_one_user(app: &TestApp, count: usize) -> (TestUser, Vec<i64>, i64) {
    let admin = app.new_admin().await;
    let (_, options) = app.new_product(&admin, &[(1_000, 100)]).await;
    let user = app.new_user().await;
    let mut ids = Vec::new();
    for _ in 0..count {
        let response = app
            .request(Method::POST, "/api/orders", Some(&user.token))
            .json(&json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    (user, ids, options[0])
}

#[tokio::test]
async fn streams_are_capped_per_user_and_per_process() {
    let app = app_with(|s| {
        s.sse.max_streams = 2;
        s.sse.max_streams_per_user = 1;
    })
    .await;
    let stream = |user: &TestUser, order: i64| {
        app.request(
            Method::GET,
            &format!("/api/orders/{order}/events"),
            Some(&user.token),
        )
        .send()
    };
    let (user, orders, _) = orders_of_one_user(&app, 2).await;
    let first = stream(&user, orders[0]).await.unwrap();
    assert_eq!(first.status(), 200);
    let refused = stream(&user, orders[1]).await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 429, "RATE_LIMITED").await;
    let (other, other_orders, _) = orders_of_one_user(&app, 1).await;
    let second = stream(&other, other_orders[0]).await.unwrap();
    assert_eq!(second.status(), 200);
    let (third, third_orders, _) = orders_of_one_user(&app, 1).await;
    let full = stream(&third, third_orders[0]).await.unwrap();
    assert_problem(full, 503, "OVERLOADED").await;
    // A closed stream gives its place back.
    drop(first);
    let again = loop {
        let response = stream(&user, orders[1]).await.unwrap();
        if response.status() == 200 {
            break response;
        }
        tokio::task::yield_now().await;
    };
    drop((again, second));
}

#[tokio::test]
async fn password_hashing_past_its_queue_answers_503_overloaded() {
    let app = app_with(|s| {
        s.password.hash_threads = 1;
        s.password.hash_queue = 1;
        s.password.hash_wait_ms = 100;
    })
    .await;
    let sign_ups = (0..24).map(|n| {
        let app = &app;
        async move {
            app.sign_up(
                "crowd",
                &format!("c{n}-{}@example.com", unique()),
                "pass-word",
            )
            .await
        }
    });
    let mut created = 0;
    let mut overloaded = 0;
    for response in futures::future::join_all(sign_ups).await {
        match response.status().as_u16() {
            201 => created += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                assert_problem(response, 503, "OVERLOADED").await;
                overloaded += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(created >= 1 && overloaded >= 1, "{created} / {overloaded}");
}

async fn placing_past_the_rate_gets_429_until_the_window_ends(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| {
        s.rate.orders = 2;
        s.rate.window_secs = 1;
    })
    .await
    else {
        return;
    };
    let admin = app.new_admin().await;
    let (_, options) = app.new_product(&admin, &[(1_000, 100)]).await;
    let (one, two) = (app.new_user().await, app.new_user().await);
    let body = json!({ "items": [{ "productOptionId": options[0], "quantity": 1 }] });
    let place = |user: &TestUser| {
        app.request(Method::POST, "/api/orders", Some(&user.token))
            .json(&body)
            .send()
    };
    // Within one window (a second): two pass, the third is refused; another user is not.
    let mut refused = None;
    for _ in 0..3 {
        let response = place(&one).await.unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 202);
    }
    let refused = refused.expect("the third order in a window is refused");
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry), "{retry}");
    assert_problem(refused, 429, "RATE_LIMITED").await;
    assert_eq!(place(&two).await.unwrap().status(), 202);
    // The window's end is the event here: wait it out, then the user may order again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(place(&one).await.unwrap().status(), 202);
}

async fn login_attempts_are_limited_per_email(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| s.rate.logins = 3).await else {
        return;
    };
    let email = format!("l{}@example.com", unique());
    assert_eq!(app.sign_up("kim", &email, "pass-word").await.status(), 201);
    for _ in 0..3 {
        assert_problem(
            app.token(&email, "wrong-pass").await,
            401,
            "INVALID_CREDENTIALS",
        )
        .await;
    }
    let limited = app.token(&email, "pass-word").await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429, "RATE_LIMITED").await;
    // The same email in other case counts as the same; another email is not limited.
    assert_problem(
        app.token(&email.to_uppercase(), "pass-word").await,
        429,
        "RATE_LIMITED",
    )
    .await;
    assert_problem(
        app.token(&format!("x{email}"), "pass-word").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
}

async fn a_user_holds_at_most_the_maximum_of_unpaid_orders(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |s| s.orders.max_open = 3).await else {
        return;
    };
    let (user, orders, option) = orders_of_one_user(&app, 3).await;
    let body = json!({ "items": [{ "productOptionId": option, "quantity": 1 }] });
    let place = || {
        app.request(Method::POST, "/api/orders", Some(&user.token))
            .json(&body)
            .send()
    };
    // Concurrent attempts are counted one after the other: none gets past the maximum.
    let attempts = futures::future::join_all((0..5).map(|_| place())).await;
    for response in attempts {
        assert_problem(response.unwrap(), 409, "TOO_MANY_OPEN_ORDERS").await;
    }
    let cancelled = app
        .request(
            Method::POST,
            &format!("/api/orders/{}/cancel", orders[0]),
            Some(&user.token),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(place().await.unwrap().status(), 202);
    assert_problem(place().await.unwrap(), 409, "TOO_MANY_OPEN_ORDERS").await;
}

crate::on_both_deployments!(
    ; deployment:
    placing_past_the_rate_gets_429_until_the_window_ends,
    login_attempts_are_limited_per_email,
    a_user_holds_at_most_the_maximum_of_unpaid_orders,
);

/// Valid requests at the edges of every bound, in sequences that move stock back and forth;
/// after each step every public read answers 200.
#[tokio::test]
async fn no_sequence_of_valid_requests_makes_a_read_fail() {
    let app = app_with(|s| {
        s.orders.max_open = 1_000;
        s.rate.orders = 100_000;
    })
    .await;
    let admin = app.new_admin().await;
    const MAX: i64 = 1_000_000_000;
    let (product_id, options) = app
        .new_product(&admin, &[(MAX, MAX), (0, 0), (MAX, 1_000)])
        .await;
    let over = app
        .request(Method::POST, "/api/admin/products", Some(&admin.token))
        .json(
            &json!({ "name": "Too much", "category": "x", "description": "more than allowed",
            "options": [{ "name": "a", "price": MAX + 1, "stock": 1 }] }),
        )
        .send()
        .await
        .unwrap();
    assert_invalid(over, "options.price").await;
    let over = app
        .request(Method::POST, "/api/admin/products", Some(&admin.token))
        .json(
            &json!({ "name": "Too much", "category": "x", "description": "more than allowed",
            "options": [{ "name": "a", "price": 1, "stock": i64::MAX }] }),
        )
        .send()
        .await
        .unwrap();
    assert_invalid(over, "options.stock").await;
    let coupon = app
        .request(Method::POST, "/api/admin/coupons", Some(&admin.token))
        .json(
            &json!({ "name": "too many units", "discountType": "FIXED", "discountValue": 1,
            "totalQuantity": i64::MAX, "expiresAt": "2099-01-01T00:00:00Z" }),
        )
        .send()
        .await
        .unwrap();
    assert_invalid(coupon, "totalQuantity").await;

    let user = app.new_user().await;
    let restock = |option: i64, quantity: i64| {
        app.request(
            Method::POST,
            &format!("/api/admin/product-options/{option}/restock"),
            Some(&admin.token),
        )
        .json(&json!({ "quantity": quantity }))
        .send()
    };
    let reads_answer = || async {
        for path in [
            format!("/api/products/{product_id}"),
            "/api/products?page=0&size=100".to_owned(),
            "/api/products/popular?days=30&limit=100".to_owned(),
        ] {
            let response = app.get(&path).await;
            assert_eq!(
                response.status(),
                200,
                "{path}: {}",
                response.text().await.unwrap()
            );
        }
    };
    assert_problem(restock(options[0], 1).await.unwrap(), 409, "STOCK_LIMIT").await;
    for round in 0..3 {
        let order = app
            .request(Method::POST, "/api/orders", Some(&user.token))
            .json(&json!({ "items": [
                { "productOptionId": options[0], "quantity": 1_000 },
                { "productOptionId": options[2], "quantity": 1_000 }
            ] }))
            .send()
            .await
            .unwrap();
        assert_eq!(order.status(), 202);
        let id = order.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        app.drain_events().await;
        reads_answer().await;
        // Fill the option back up to the maximum while the order holds its units (refused
        // once it is there)...
        let refill = restock(options[0], 1_000).await.unwrap();
        match round {
            0 => assert_eq!(refill.status(), 200),
            _ => {
                assert_problem(refill, 409, "STOCK_LIMIT").await;
            }
        }
        assert_eq!(restock(options[2], 1_000_000).await.unwrap().status(), 200);
        // ...then give the units back on top of it.
        let cancelled = app
            .request(
                Method::POST,
                &format!("/api/orders/{id}/cancel"),
                Some(&user.token),
            )
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(cancelled.status(), 200);
        app.drain_events().await;
        reads_answer().await;
        assert_problem(restock(options[0], 1).await.unwrap(), 409, "STOCK_LIMIT").await;
    }
    let body: Value = app
        .get(&format!("/api/products/{product_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["options"][0]["stock"], MAX + 1_000);
    assert_eq!(body["options"][2]["stock"], 3_001_000);
}

/// A server started with a hard limit of 600 descriptors says so, serves at most what leaves
/// descriptors for itself, and a crowd of 700 connections waits in the backlog instead of
/// running the process out of descriptors: every one connects at once, the process still
/// answers, and it never fails to accept.
#[test]
fn a_low_descriptor_limit_is_logged_and_caps_connections_instead_of_failing_under_load() {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        os::unix::process::CommandExt,
        process::{Command, Stdio},
    };
    server::limits::Descriptors::raise().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_stampede"));
    command
        .arg("serve")
        .env("STAMPEDE_DATA_DIR", dir.path())
        .env("STAMPEDE_BIND", "127.0.0.1:0")
        .env("STAMPEDE_JWT_SECRET", crate::process::SECRET)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 300,
                rlim_max: 600,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    /// Kills the server however the test ends (a failed assertion included).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(command.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut start = Vec::new();
    let address = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        start.push(line.clone());
        if let Some((_, rest)) = line.split_once("listening on http://") {
            break rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                .collect::<String>();
        }
    };
    let log = std::sync::Arc::new(std::sync::Mutex::new(start));
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    let said = |what: &str| log.lock().unwrap().iter().any(|line| line.contains(what));
    assert!(
        said("file descriptors: raised to the hard limit") && said("soft=600") && said("was=300"),
        "{:?}",
        log.lock().unwrap()
    );
    assert!(said("connections=344"), "{:?}", log.lock().unwrap());

    // Every one connects (the listen backlog holds those past the cap) without waiting.
    let crowd: Vec<std::net::TcpStream> = (0..700)
        .map(|_| {
            let address = address.parse().unwrap();
            std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1))
                .unwrap()
        })
        .collect();
    // Wait until the server has taken all it will: its cap of 344 connections, or, were it
    // uncapped, the descriptor limit, where accepting fails.
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/fd", child.0.id()))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = sockets();
        if now >= 344 && now == seen {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now} sockets");
        seen = now;
    }
    // The cap and a few of its own (listener, database, wake-ups), not the 600 it could open.
    assert!(seen < 400, "the server holds {seen} sockets");
    let mut first = &crowd[0];
    first
        .write_all(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    first.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(crowd);
    drop(child);
    assert!(
        !said("accepting a connection failed"),
        "{:?}",
        log.lock().unwrap()
    );
}
