//! The files in `deploy/`: the Prometheus alert rules pass their `promtool` tests, and the rules
//! and the Grafana dashboard name only metrics the server exports.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use server::http::metrics::METRICS;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

/// The `stampede_*` names in `text`, histogram series named by their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("stampede_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.insert(family.to_owned());
    }
    names
}

#[test]
fn the_alert_rules_and_the_dashboard_name_only_exported_metrics() {
    let exported: BTreeSet<&str> = METRICS.iter().map(|(_, name, _)| *name).collect();
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("grafana/dashboards/stampede.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert_eq!(parsed["uid"], "stampede");
    for (file, text) in [("alerts.yml", &rules), ("stampede.json", &dashboard)] {
        let named = metric_names(text);
        assert!(named.len() >= 5, "{file} names {named:?}");
        for name in named {
            assert!(
                exported.contains(name.as_str()),
                "{file} names {name}, which the server does not export"
            );
        }
    }
}

/// `promtool test rules`: each alert fires when it should and not before. CI installs
/// promtool (Debian's `prometheus`); elsewhere the test says it did not run.
#[test]
fn the_alert_rules_pass_their_promtool_tests() {
    let dir = deploy("prometheus");
    let run = |args: &[&str]| {
        Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
    };
    match run(&["check", "rules", "alerts.yml"]) {
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool not found ({error}): alert rule tests NOT run (apt-get install prometheus)");
            return;
        }
        Err(error) => panic!("promtool is required on CI: {error}"),
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        ),
    }
    let tested = run(&["test", "rules", "alerts.test.yml"]).unwrap();
    assert!(
        tested.status.success(),
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
}

fn repo_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `STAMPEDE_*` names in `text` (the test suite's own `STAMPEDE_TEST_*` aside).
fn variables(text: &str) -> BTreeSet<String> {
    text.match_indices("STAMPEDE_")
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|v| v.len() > "STAMPEDE_".len() && !v.starts_with("STAMPEDE_TEST_"))
        .collect()
}

/// compose.yaml cannot be run here (no Docker daemon); what can be checked is.
#[test]
fn the_compose_file_runs_two_apis_a_worker_and_their_services_with_known_settings() {
    let text = repo_file("compose.yaml");
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let command = |name: &str| serde_yaml::to_string(&services[name]["command"]).unwrap();
    for name in ["postgres", "redis", "kafka", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "{name}");
    }
    for (name, role) in [("api1", "api"), ("api2", "api"), ("worker", "worker")] {
        assert!(
            command(name).contains(&format!("- {role}\n")),
            "{name}: {}",
            command(name)
        );
    }
    let roles = serde_yaml::to_string(&services["kafka"]["environment"]).unwrap();
    assert!(
        roles.contains("broker,controller"),
        "KRaft, one broker: {roles}"
    );
    let known = server::config::variables();
    let dockerfile = repo_file("Dockerfile");
    for variable in variables(&text).union(&variables(&dockerfile)) {
        assert!(
            known.contains(variable),
            "{variable} is not a configuration key"
        );
    }
    for mounted in [
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/provisioning/dashboards/stampede.yml",
        "deploy/grafana/provisioning/datasources/prometheus.yml",
        "deploy/grafana/dashboards/stampede.json",
    ] {
        let is_mounted = std::path::Path::new(mounted)
            .ancestors()
            .any(|path| text.contains(&format!("./{}:", path.display())));
        assert!(is_mounted, "{mounted} is not mounted");
        repo_file(mounted);
    }
}

/// compose.yaml carries no secret that works: the token secret is left to the database, the
/// passwords come from the environment (compose refuses to start without them), and the
/// monitoring services listen on the host's loopback only.
#[test]
fn the_compose_file_holds_no_usable_secret_and_keeps_monitoring_local() {
    let text = repo_file("compose.yaml");
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    assert!(
        !text.contains("STAMPEDE_JWT_SECRET:"),
        "no token secret is set"
    );
    for (service, key) in [
        ("postgres", "POSTGRES_PASSWORD"),
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD"),
    ] {
        let value = services[service]["environment"][key].as_str().unwrap();
        assert!(
            value.starts_with("${") && value.contains(":?"),
            "{service} {key} must come from the environment: {value}"
        );
    }
    let url = compose["x-stampede"]["environment"]["STAMPEDE_DATABASE_URL"]
        .as_str()
        .unwrap();
    assert!(url.contains("${POSTGRES_PASSWORD:?"), "{url}");
    for service in ["prometheus", "grafana"] {
        for port in services[service]["ports"].as_sequence().unwrap() {
            let port = port.as_str().unwrap();
            assert!(port.starts_with("127.0.0.1:"), "{service} publishes {port}");
        }
    }
}

/// The image is built with the command CI runs, in two stages, and runs as a user with a
/// health check.
#[test]
fn the_dockerfile_builds_the_way_ci_does() {
    let dockerfile = repo_file("Dockerfile");
    let build = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.find("cargo build").map(|at| line[at..].trim()))
        .unwrap();
    assert!(
        repo_file(".ci/run")
            .lines()
            .any(|line| line.trim() == build),
        ".ci/run does not run {build:?}"
    );
    assert_eq!(dockerfile.matches("\nFROM ").count(), 2, "multi-stage");
    for needed in [
        "USER stampede",
        "HEALTHCHECK",
        "/health/live",
        "bookworm-slim",
    ] {
        assert!(dockerfile.contains(needed), "{needed}");
    }
}
