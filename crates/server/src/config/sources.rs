//! Where settings come from, and the names they are known by. A key is `name` (process-wide)
//! or `section.name`; its variable is `STAMPEDE_` and the key in capitals, the dot an
//! underscore (`http.max_connections` is `STAMPEDE_HTTP_MAX_CONNECTIONS`). A few keys are also
//! read under the variable they had before sections ([`RENAMED`]). Every name a user writes is
//! checked: a typo would otherwise start the server on a default without a word.

use std::collections::BTreeMap;

use anyhow::Context as _;

use super::Settings;

/// Variables kept from before the keys had sections (`docs/api.md` names some of them), with
/// the key each sets. Either spelling works; both at once is refused.
const RENAMED: &[(&str, &str)] = &[
    ("STAMPEDE_MAX_OPEN_ORDERS", "orders.max_open"),
    ("STAMPEDE_PAYMENT_WINDOW_SECS", "orders.payment_window_secs"),
    ("STAMPEDE_SAGA_STUCK_SECS", "orders.saga_stuck_secs"),
    ("STAMPEDE_ORDER_SWEEP_MS", "orders.sweep_ms"),
    ("STAMPEDE_POPULAR_CACHE_MS", "ranking.popular_cache_ms"),
];

/// Environment variables of the test suite, not of the server (`STAMPEDE_TEST_DATABASE_URL`, …).
const TEST_PREFIX: &str = "STAMPEDE_TEST_";

/// Every configuration key, read off the defaults: `name` or `section.name`.
pub fn keys() -> Vec<String> {
    let defaults = serde_json::to_value(Settings::default()).expect("settings serialize");
    let serde_json::Value::Object(top) = defaults else {
        unreachable!("settings are a table")
    };
    let mut keys = Vec::new();
    for (name, value) in top {
        match value {
            serde_json::Value::Object(section) => {
                keys.extend(section.keys().map(|key| format!("{name}.{key}")));
            }
            _ => keys.push(name),
        }
    }
    keys.sort_unstable();
    keys
}

/// The environment variable of `key`.
pub fn variable(key: &str) -> String {
    format!("STAMPEDE_{}", key.replace('.', "_").to_uppercase())
}

/// Every variable the server reads: each key's, and the old names still read.
pub fn variables() -> Vec<String> {
    let mut variables: Vec<String> = keys().iter().map(|key| variable(key)).collect();
    variables.extend(RENAMED.iter().map(|(old, _)| old.to_string()));
    variables.sort_unstable();
    variables
}

/// The old variables set in this environment, each with the variable that now names its key:
/// worth a warning once logging is up.
pub fn renamed_variables() -> Vec<(&'static str, String)> {
    RENAMED
        .iter()
        .filter(|(old, _)| std::env::var_os(old).is_some())
        .map(|(old, key)| (*old, variable(key)))
        .collect()
}

/// The keys set by `variables` (name, value), refusing a `STAMPEDE_*` variable that names no
/// key, and a key set under both its names.
fn from_environment(
    variables: impl Iterator<Item = (String, String)>,
    keys: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let known: BTreeMap<String, &str> = keys
        .iter()
        .map(|key| (variable(key), key.as_str()))
        .chain(RENAMED.iter().map(|(old, key)| (old.to_string(), *key)))
        .collect();
    let mut set = BTreeMap::new();
    for (name, value) in variables {
        if !name.starts_with("STAMPEDE_") || name.starts_with(TEST_PREFIX) {
            continue;
        }
        let Some(key) = known.get(&name) else {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            anyhow::bail!(
                "unknown configuration variable {name}; did you mean {}?",
                nearest(&name, &names)
            );
        };
        anyhow::ensure!(
            set.insert(key.to_string(), value).is_none(),
            "{} and its old name are both set; keep {}",
            variable(key),
            variable(key)
        );
    }
    Ok(set)
}

/// Refuses a key of a configuration file that names no key, naming the nearest one, or the
/// section a key written in the flat form of earlier releases now lives in.
fn check_file(in_file: &BTreeMap<String, config::Value>, keys: &[String]) -> anyhow::Result<()> {
    let mut written = Vec::new();
    for (name, value) in in_file {
        match value.clone().into_table() {
            Ok(section) if keys.iter().any(|key| key.starts_with(&format!("{name}."))) => {
                written.extend(section.keys().map(|key| format!("{name}.{key}")));
            }
            _ => written.push(name.clone()),
        }
    }
    let spelled = |key: &str| match key.split_once('.') {
        Some((section, name)) => format!("{name:?} in [{section}]"),
        None => format!("{key:?}"),
    };
    let Some(key) = written.iter().find(|key| !keys.contains(key)) else {
        return Ok(());
    };
    let flat = keys.iter().find(|known| known.replace('.', "_") == *key);
    let renamed = RENAMED
        .iter()
        .find(|(old, _)| old["STAMPEDE_".len()..].eq_ignore_ascii_case(key))
        .map(|(_, key)| key.to_string());
    if let Some(now) = flat.cloned().or(renamed) {
        anyhow::bail!("file key {key:?} is now {}", spelled(&now));
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    anyhow::bail!(
        "unknown configuration file key {}; did you mean {}?",
        spelled(key),
        spelled(nearest(key, &names))
    )
}

/// The file and environment layers (the defaults are the settings' own), with unknown
/// variables and keys refused.
pub fn layers(file: Option<&std::path::Path>) -> anyhow::Result<config::Config> {
    let keys = keys();
    let environment = from_environment(std::env::vars(), &keys)?;
    let file = match file {
        Some(path) => config::File::from(path).required(true),
        None => config::File::with_name("stampede").required(false),
    };
    let in_file: BTreeMap<String, config::Value> = config::Config::builder()
        .add_source(file.clone())
        .build()
        .and_then(config::Config::try_deserialize)
        .context("reading the configuration file")?;
    check_file(&in_file, &keys)?;
    let mut layers = config::Config::builder().add_source(file);
    for (key, value) in environment {
        layers = layers.set_override(key, value)?;
    }
    layers.build().context("reading the configuration")
}

/// The known name nearest to `name`.
fn nearest<'a>(name: &str, known: &[&'a str]) -> &'a str {
    known
        .iter()
        .min_by_key(|k| edit_distance(name, k))
        .copied()
        .expect("there are keys")
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> impl Iterator<Item = (String, String)> {
        let names: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.to_string(), "1".to_owned()))
            .collect();
        names.into_iter()
    }

    #[test]
    fn an_unknown_variable_is_refused_with_the_nearest_known_one() {
        let keys = keys();
        let error = from_environment(set(&["PATH", "STAMPEDE_DATABSE_URL"]), &keys)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("STAMPEDE_DATABSE_URL; did you mean STAMPEDE_DATABASE_URL?"),
            "{error}"
        );
        let known = set(&[
            "STAMPEDE_BIND",
            "STAMPEDE_JWT_SECRET",
            "STAMPEDE_HTTP_MAX_CONNECTIONS",
            "STAMPEDE_PAYMENT_WINDOW_SECS",
            "STAMPEDE_TEST_BUS_URL",
        ]);
        let set_keys = from_environment(known, &keys).unwrap();
        let set_keys: Vec<&str> = set_keys.keys().map(String::as_str).collect();
        assert_eq!(
            set_keys,
            [
                "bind",
                "http.max_connections",
                "jwt_secret",
                "orders.payment_window_secs"
            ]
        );
    }

    #[test]
    fn an_old_variable_and_its_new_name_together_are_refused() {
        let error = from_environment(
            set(&["STAMPEDE_MAX_OPEN_ORDERS", "STAMPEDE_ORDERS_MAX_OPEN"]),
            &keys(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("keep STAMPEDE_ORDERS_MAX_OPEN"), "{error}");
    }

    #[test]
    fn every_key_has_one_variable_and_old_names_point_at_keys() {
        let keys = keys();
        let mut variables: Vec<String> = keys.iter().map(|key| variable(key)).collect();
        variables.sort_unstable();
        variables.dedup();
        assert_eq!(variables.len(), keys.len(), "two keys share a variable");
        for (old, key) in RENAMED {
            assert!(keys.iter().any(|k| k == key), "{old} names no key ({key})");
            assert!(
                !variables.iter().any(|v| v == old),
                "{old} is also a key's name"
            );
        }
    }
}
