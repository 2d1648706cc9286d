//! SIGTERM with open streams: the `stampede` process ends them, finishes, and exits within its
//! grace period, and its log says so. Embedded: one process, order streams held open by orders
//! awaiting payment. Production: an API-only process (no worker runs), so orders and coupon
//! tasks stay `PENDING` and both kinds of stream stay open until the signal.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use serde_json::{json, Value};
use server::tokens::Tokens;

use crate::helpers::{shared_services, unique, Deployment};

const SECRET: &str = "shutdown-test-secret-of-enough-length";
const GRACE: Duration = Duration::from_secs(5);

async fn sigterm_with_open_streams_exits_within_the_grace_and_says_so(deployment: Deployment) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("STAMPEDE_ROLE".to_owned(), "all".to_owned())];
    if let Deployment::Production = deployment {
        let Some(services) = shared_services() else {
            return;
        };
        let namespace = format!("t_{}", unique());
        env = vec![
            ("STAMPEDE_ROLE".to_owned(), "api".to_owned()),
            ("STAMPEDE_DATABASE_URL".to_owned(), services.database),
            ("STAMPEDE_DATABASE_SCHEMA".to_owned(), namespace.clone()),
            ("STAMPEDE_CACHE_URL".to_owned(), services.cache),
            ("STAMPEDE_CACHE_PREFIX".to_owned(), format!("{namespace}:")),
            ("STAMPEDE_BUS_URL".to_owned(), services.bus),
            ("STAMPEDE_TOPIC_PREFIX".to_owned(), format!("{namespace}-")),
        ];
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .arg("serve")
        .envs(env)
        .env("STAMPEDE_DATA_DIR", dir.path())
        .env("STAMPEDE_BIND", "127.0.0.1:0")
        .env("STAMPEDE_JWT_SECRET", SECRET)
        .env("STAMPEDE_SHUTDOWN_GRACE_MS", GRACE.as_millis().to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if let Some((_, rest)) = line.split_once("listening on ") {
            let address: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                .collect();
            break address;
        }
    };
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = log.clone();
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });

    let tokens = Tokens::from_secret(SECRET.as_bytes(), Duration::from_secs(600));
    let (admin, user) = (
        tokens.issue(1, true).unwrap().0,
        tokens.issue(2, false).unwrap().0,
    );
    let client = reqwest::Client::new();
    let product: Value = client
        .post(format!("{base}/api/admin/products"))
        .bearer_auth(&admin)
        .json(
            &json!({ "name": "Lamp", "category": "home", "description": "a warm desk lamp",
            "options": [{ "name": "one", "price": 1_000, "stock": 10 }] }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let option = product["options"][0]["id"].as_i64().unwrap();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let order: Value = client
            .post(format!("{base}/api/orders"))
            .bearer_auth(&user)
            .json(&json!({ "items": [{ "productOptionId": option, "quantity": 1 }] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let response = client
            .get(format!("{base}/api/orders/{}/events", order["id"]))
            .bearer_auth(&user)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let first = body.next().await.expect("the current status").unwrap();
        assert!(String::from_utf8_lossy(&first).contains("event: status"));
        streams.push(body);
    }
    if let Deployment::Production = deployment {
        // No worker takes the task: its stream waits for a result that does not come.
        let coupon: Value = client
            .post(format!("{base}/api/admin/coupons"))
            .bearer_auth(&admin)
            .json(
                &json!({ "name": "shutdown sale", "discountType": "FIXED", "discountValue": 100,
                "totalQuantity": 5, "expiresAt": "2099-01-01T00:00:00Z" }),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let task: Value = client
            .post(format!("{base}/api/coupons/{}/issue", coupon["id"]))
            .bearer_auth(&user)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let response = client
            .get(format!(
                "{base}/api/coupon-tasks/{}/events",
                task["taskId"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response.bytes_stream());
    }

    // A connection that has asked nothing yet (a client's pool may open one it never uses):
    // shutting down closes it instead of waiting for its request.
    let idle = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Every open stream ends: the clients see the end of the body, then resume elsewhere.
    for mut body in streams {
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(chunk) = body.next().await {
                if chunk.is_err() {
                    break;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream ended");
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    reader.join().unwrap();
    let log = log.lock().unwrap().join("\n");
    assert!(status.success(), "{status:?}");
    // Whatever is slow (a stream, a request, background work), the process is gone by the end
    // of the grace; the second more is for the process's own exit on a loaded machine.
    assert!(
        took < GRACE + Duration::from_secs(1),
        "exited after {took:?}, past the grace:\n{log}"
    );
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(log.contains("streams ended"), "{log}");
    assert!(log.contains("every connection closed"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    drop(idle);
}

crate::on_both_deployments!(; deployment: sigterm_with_open_streams_exits_within_the_grace_and_says_so);
