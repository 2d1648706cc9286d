//! The load kit as a user runs it (`stampede seed`, `stampede serve`, `stampede load`), and its
//! verdict catching a broken invariant.

use std::{process::Command, time::Duration};

use loadkit::{http::Target, scenario::RunLog, verdict, Seeded, SeededUser};

use crate::{
    helpers::spawn_app,
    process::{free_port, Process, SECRET},
};

/// `stampede` in `dir`, its data under `dir/data`.
fn stampede(dir: &std::path::Path) -> Command {
    let mut command = crate::cli::stampede(&dir.join("data"));
    // The server below signs with the secret every child process of the tests uses.
    command.current_dir(dir).env("STAMPEDE_JWT_SECRET", SECRET);
    command
}

/// What CI runs: ten seconds of the journey and of a flash sale against the embedded server,
/// each ending with every invariant checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_seconds_of_journey_and_flash_sale_on_the_embedded_server_keep_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = stampede(dir.path())
        .args(["seed", "--users", "2000", "--products", "5"])
        .output()
        .unwrap();
    assert!(seeded.status.success(), "{seeded:?}");
    let port = free_port();
    let data = dir.path().join("data").display().to_string();
    let _server = Process::start(
        vec![
            ("STAMPEDE_DATA_DIR".to_owned(), data),
            ("STAMPEDE_BIND".to_owned(), format!("127.0.0.1:{port}")),
        ],
        "all",
    );
    for scenario in ["journey", "flash-sale"] {
        let run = stampede(dir.path())
            .args([
                "load",
                "--scenario",
                scenario,
                "--duration",
                "10s",
                "--vus",
                "20",
            ])
            .args(["--base-url", &format!("http://127.0.0.1:{port}")])
            .args(["--json", "run.json", "--report", "run.html"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{scenario}: {out}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(out.contains("verdict:") && !out.contains("FAIL"), "{out}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("run.json")).unwrap()).unwrap();
        assert!(report["requests"].as_u64().unwrap() > 100, "{report}");
        assert!(!report["verdict"].as_array().unwrap().is_empty());
    }
}

/// The verdict compares the run's record with the deployment: a coupon unit issued that no
/// accepted task of the run accounts for, and stock that no order holds, are both named.
#[tokio::test]
async fn the_verdict_names_the_invariants_a_deployment_breaks() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (product, options) = app.new_product(&admin, &[(1_000, 10)]).await;
    let coupon = app.new_coupon(&admin, 5, Duration::from_secs(3600)).await;
    assert_eq!(app.issue(&user.token, coupon).await.status(), 202);
    app.drain_events().await;

    let seed = Seeded {
        password: String::new(),
        admin: SeededUser {
            id: admin.id,
            token: admin.token.clone(),
        },
        users: vec![SeededUser {
            id: user.id,
            token: user.token.clone(),
        }],
        products: vec![product],
        coupons: vec![coupon],
    };
    let log = RunLog {
        coupons_issued_before: [(coupon, 0)].into(),
        stock_before: [(options[0], 12)].into(),
        ..RunLog::default()
    };
    let target = Target::parse(&app.address).unwrap();
    let checks = verdict::check(target.clone(), &seed, &log).await.unwrap();
    let broken: Vec<&str> = checks
        .iter()
        .filter(|c| !c.held)
        .map(|c| c.invariant)
        .collect();
    assert_eq!(
        broken,
        [
            "no coupon issued beyond its quantity, and each issue is a successful task",
            "stock taken equals the units of paid and payable orders"
        ],
        "{checks:?}"
    );

    // The same deployment, with the record that matches it, holds.
    let honest = RunLog {
        coupons_issued_before: [(coupon, 1)].into(),
        stock_before: [(options[0], 10)].into(),
        ..RunLog::default()
    };
    let checks = verdict::check(target, &seed, &honest).await.unwrap();
    assert!(checks.iter().all(|c| c.held), "{checks:?}");
}
