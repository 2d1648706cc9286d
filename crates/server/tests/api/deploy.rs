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
