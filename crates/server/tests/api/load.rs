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

/// What CI runs: ten seconds of the journey, of a flash sale, of a waiting room and of a crowd
/// (spread over two generator processes) against the embedded server, each ending with every
/// invariant checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_seconds_of_each_scenario_on_the_embedded_server_keep_every_invariant_and_report_them()
{
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
    // The waiting room's line must never run empty for its rate to be measured: more users
    // than it admits in the time one admitted user takes to ask and join again.
    let runs: [(&str, &[&str]); 4] = [
        ("journey", &["--vus", "20"]),
        ("flash-sale", &["--vus", "20"]),
        ("waiting-room", &["--vus", "200", "--admit-rate", "20"]),
        (
            "crowd",
            &[
                "--vus",
                "300",
                "--rate",
                "300",
                "--opens-in",
                "3s",
                "--admit-rate",
                "200",
                "--source-addresses",
                "127.0.0.1-127.0.0.2",
                "--processes",
                "2",
            ],
        ),
    ];
    for (scenario, options) in runs {
        let run = stampede(dir.path())
            .args(["load", "--scenario", scenario, "--duration", "10s"])
            .args(options)
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
        if scenario == "crowd" {
            // Spread over two processes, and merged: every place of both is in the verdict.
            let err = String::from_utf8_lossy(&run.stderr);
            assert!(err.contains("300 virtual users over 2 processes"), "{err}");
            assert!(out.contains("(300 stream(s))"), "{out}");
        }
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("run.json")).unwrap()).unwrap();
        assert!(report["requests"].as_u64().unwrap() > 100, "{report}");
        assert!(!report["verdict"].as_array().unwrap().is_empty());
        let page = std::fs::read_to_string(dir.path().join("run.html")).unwrap();
        assert!(
            page.contains("PASS: all") && page.contains("<svg"),
            "{scenario}"
        );
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

/// A waiting-room run's record that says a guarded request was accepted without an admission
/// and that a stream ended early: both are named, and the line itself (read back from the
/// deployment) holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_names_what_a_waiting_room_run_saw_go_wrong() {
    use loadkit::scenario::{RoomLog, RoomRun, TakenPlace};

    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 5, Duration::from_secs(3600)).await;
    let sale = serde_json::json!({ "couponId": coupon });
    let room = app
        .new_room(&admin, sale, chrono::Duration::zero(), 1)
        .await;
    let opens = room["opensAt"].as_str().unwrap().parse().unwrap();
    let room_id = room["id"].as_i64().unwrap();
    let mut places = Vec::new();
    for user in 0..3 {
        let (_, joined) = app.join_room(&app.token_for(5_000 + user), room_id).await;
        places.push(TakenPlace {
            place_id: joined["placeId"].as_str().unwrap().to_owned(),
            user_id: 5_000 + user,
            early: false,
            last_status: "ADMITTED".into(),
        });
    }
    // The second leaves: the line skips it.
    let left = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/rooms/{room_id}/places/me"),
            Some(&app.token_for(5_001)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    places[2].last_status = "stream ended early".into();
    let log = RunLog {
        room: RoomLog {
            room: Some(RoomRun {
                room_id,
                coupon_id: coupon,
                rate: 1,
                opens_at: opens,
            }),
            places,
            unadmitted_asked: 4,
            unadmitted_accepted: 1,
        },
        ..RunLog::default()
    };
    let seed = Seeded {
        password: String::new(),
        admin: SeededUser {
            id: admin.id,
            token: admin.token.clone(),
        },
        users: Vec::new(),
        products: Vec::new(),
        coupons: Vec::new(),
    };
    let target = Target::parse(&app.address).unwrap();
    let checks = verdict::check(target, &seed, &log).await.unwrap();
    let broken: Vec<&str> = checks
        .iter()
        .filter(|c| !c.held)
        .map(|c| c.invariant)
        .collect();
    assert_eq!(
        broken,
        [
            "no guarded request was accepted without an admission",
            "every place's stream ended ADMITTED or CLOSED",
        ],
        "{checks:?}"
    );
}
