//! The OpenAPI document: `docs/openapi.json` is the one the server serves, and the server
//! answers as the document says under schemathesis, as a user and as an admin.

use std::path::PathBuf;

use crate::helpers::{spawn_app, TestApp};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn the_checked_in_document_is_the_one_the_server_serves() {
    let app = spawn_app().await;
    let served: serde_json::Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let file = std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap();
    let checked_in: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert!(
        served == checked_in,
        "docs/openapi.json differs from the served document: \
         run `cargo run --bin stampede -- openapi > docs/openapi.json`"
    );
}

/// Runs schemathesis (`pip install schemathesis`) with the repository's `schemathesis.toml`
/// against `app` with `token`; its report when a check failed.
async fn schemathesis(app: &TestApp, token: &str) -> Option<String> {
    let (token, document) = (
        token.to_owned(),
        format!("{}/api-docs/openapi.json", app.address),
    );
    // The server runs on this test's runtime: the run blocks another thread.
    let run = tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        std::process::Command::new("schemathesis")
            .current_dir(work.path())
            .env("STAMPEDE_FUZZ_TOKEN", token)
            .arg("--no-color")
            .arg("--config-file")
            .arg(repo().join("schemathesis.toml"))
            .args(["run", "--seed", "20261201"])
            .arg(document)
            .output()
    })
    .await
    .unwrap();
    let output = match run {
        Ok(output) => output,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("schemathesis not found ({error}): the API was NOT fuzzed (pip install schemathesis)");
            return None;
        }
        Err(error) => panic!("schemathesis is required on CI: {error}"),
    };
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    (!output.status.success()).then_some(report)
}

/// Every operation, every check: statuses, content types, headers and bodies as documented,
/// valid data accepted, invalid data refused, no 5xx. On both deployments: what one database
/// takes, another may refuse (PostgreSQL cannot hold a NUL in text).
async fn the_server_answers_as_its_document_says_to_a_user_and_to_an_admin(app: TestApp) {
    let user = app.new_user().await;
    let admin = app.new_admin().await;
    for (who, token) in [("user", &user.token), ("admin", &admin.token)] {
        if let Some(report) = schemathesis(&app, token).await {
            panic!("schemathesis as {who} found failures:\n{report}");
        }
    }
}

crate::on_both_deployments!(the_server_answers_as_its_document_says_to_a_user_and_to_an_admin);
