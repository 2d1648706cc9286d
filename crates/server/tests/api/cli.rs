//! The `stampede` binary as an operator runs it.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

pub fn stampede(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stampede"));
    command
        .env("STAMPEDE_DATA_DIR", data_dir)
        .env("STAMPEDE_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    command
}

#[tokio::test]
async fn serve_logs_its_address_answers_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = stampede(dir.path())
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server logs before it exits")
            .unwrap();
        if let Some(at) = line.find("listening on http://") {
            break line[at + "listening on ".len()..].trim().to_owned();
        }
    };
    let ready = reqwest::get(format!("{address}/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(
        dir.path().join("stampede.db").exists(),
        "SQLite under the data dir"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn admin_create_creates_then_promotes_the_same_account() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let output = stampede(dir.path())
            .args([
                "admin",
                "create",
                "--email",
                "ops@example.com",
                "--password",
                "s3cret-pw",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(run().contains("created"));
    assert!(run().contains("is now an admin"));
    let migrate = stampede(dir.path()).arg("migrate").output().unwrap();
    assert!(migrate.status.success());
}

#[test]
fn an_unsupported_bus_url_fails_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = stampede(dir.path())
        .arg("serve")
        .env("STAMPEDE_BUS_URL", "nats://127.0.0.1:4222")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("unsupported bus URL"), "{text}");
}

/// `stampede seed` twice: the second run makes nothing new and writes the same accounts, and
/// the tokens it writes are accepted by a server of that deployment. Each run keys the accounts
/// with a password of its own, found only in the seed file (its owner's alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_run_twice_keeps_its_accounts_and_writes_tokens_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let seed = |name: &str| {
        let out = dir.path().join(name);
        let output = stampede(dir.path())
            .args([
                "seed",
                "--users",
                "120",
                "--products",
                "2",
                "--coupons",
                "1",
            ])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is its owner's alone");
        let seeded: server::seed::Seeded =
            serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
        seeded
    };
    let (first, second) = (seed("first.json"), seed("second.json"));
    let ids = |s: &server::seed::Seeded| s.users.iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(&first).len(), 120);
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(
        (first.products.len(), first.coupons.len()),
        (2, 1),
        "{first:?}"
    );
    assert_eq!(
        (&first.products, &first.coupons),
        (&second.products, &second.coupons)
    );
    assert_eq!(second.password.len(), 24);
    assert_ne!(first.password, second.password, "a password per run");

    let data_dir = dir.path().to_owned();
    let app = crate::helpers::spawn_with(crate::helpers::Deployment::Embedded, |s| {
        s.data_dir = data_dir;
    })
    .await
    .unwrap();
    let user = &second.users[7];
    let points = app
        .request(
            reqwest::Method::GET,
            &format!("/api/users/{}/points", user.id),
            Some(&user.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(points.status(), 200);
    let product = app
        .get(&format!("/api/products/{}", second.products[1]))
        .await;
    assert_eq!(product.status(), 200);
    let admin = "seed-admin@load.stampede.invalid";
    for (password, status) in [
        ("load-test-only", 401),
        (first.password.as_str(), 401),
        (second.password.as_str(), 200),
    ] {
        let login = app.token(admin, password).await;
        assert_eq!(login.status(), status, "{password}");
    }

    // A deployment with real accounts is not seeded unless asked to be.
    assert_eq!(
        app.sign_up("real", "someone@example.com", "pass-word")
            .await
            .status(),
        201
    );
    let refused = stampede(dir.path())
        .args(["seed", "--users", "3", "--products", "1", "--coupons", "0"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("1 account(s) that `seed` did not make"),
        "{said}"
    );
    let forced = stampede(dir.path())
        .args([
            "seed",
            "--users",
            "3",
            "--products",
            "1",
            "--coupons",
            "0",
            "--force",
        ])
        .arg("--out")
        .arg(dir.path().join("forced.json"))
        .output()
        .unwrap();
    assert!(forced.status.success(), "{forced:?}");
    let no_lifetime = stampede(dir.path())
        .args(["seed", "--token-ttl-secs", "0"])
        .output()
        .unwrap();
    assert!(!no_lifetime.status.success());
    assert!(String::from_utf8_lossy(&no_lifetime.stderr).contains("--token-ttl-secs"));
}

/// `events dead-letters` lists by topic, group and age; `events discard` takes the chosen ones
/// off the list for good (they stay on record); both it and `events replay` need a selection.
#[tokio::test]
async fn dead_letters_are_listed_by_filter_and_discarded_only_when_named() {
    let app = crate::helpers::spawn_app().await;
    let dir = app.state.settings.data_dir.clone();
    for (group, topic) in [
        ("coupon-store", "coupon-issued-success"),
        ("coupon-store", "coupon-issue-failed"),
        ("ranking", "product-sold"),
    ] {
        let mut tx = app.state.db.begin().await.unwrap();
        db::exec!(
            tx,
            "INSERT INTO dead_letters (consumer, event_id, topic, envelope, error, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            group,
            uuid::Uuid::now_v7(),
            topic,
            sqlx::types::Json(serde_json::json!({})),
            "boom",
            5
        )
        .unwrap();
        tx.commit().await.unwrap();
    }
    let run = |args: &[&str]| {
        let out = stampede(&dir).arg("events").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let listed = |args: &[&str]| run(args).1.lines().count();
    assert_eq!(listed(&["dead-letters"]), 3);
    assert_eq!(listed(&["dead-letters", "--group", "coupon-store"]), 2);
    assert_eq!(listed(&["dead-letters", "--topic", "product-sold"]), 1);
    assert_eq!(listed(&["dead-letters", "--since", "1h"]), 3);
    assert_eq!(
        listed(&["dead-letters", "--since", "2099-01-01T00:00:00Z"]),
        0
    );

    let (ok, _, error) = run(&["discard"]);
    assert!(!ok && error.contains("name the dead letters"), "{error}");
    let (ok, _, error) = run(&["replay"]);
    assert!(
        !ok && error.contains("name the dead letters to replay"),
        "{error}"
    );
    let (ok, out, _) = run(&[
        "discard",
        "--group",
        "coupon-store",
        "--topic",
        "coupon-issue-failed",
    ]);
    assert!(ok && out.contains("1 dead letter(s) discarded"), "{out}");
    assert_eq!(listed(&["dead-letters"]), 2);
    assert_eq!(
        eventbus::dead_letters::pending_by_consumer(&app.state.db)
            .await
            .unwrap()
            .len(),
        2,
        "discarded ones are not pending"
    );
}
