//! Layered configuration: built-in defaults (the embedded deployment), then an optional TOML
//! file (`--config FILE`, or `stampede.toml` in the working directory), then `STAMPEDE_*`
//! environment variables (`STAMPEDE_DATABASE_URL` sets `database_url`, and so on).
//! URLs and secrets never appear in `Debug` output or logs.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Which parts of Stampede a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// HTTP API and the outbox relay.
    Api,
    /// Event consumers, the outbox relay and the operations endpoints.
    Worker,
    /// Everything.
    All,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: one line per event, span fields inline.
    Text,
    /// For log pipelines: one JSON object per line, with the fields of every enclosing span.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub bind: SocketAddr,
    pub role: Role,
    pub log_format: LogFormat,
    /// Where the embedded deployment keeps its files (SQLite database, generated secrets).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; defaults to `sqlite://<data_dir>/stampede.db`.
    pub database_url: Option<SecretString>,
    /// PostgreSQL schema to use (created if missing); default: the connection's search path.
    pub database_schema: Option<String>,
    /// `memory://` or `redis://...`.
    pub cache_url: SecretString,
    /// Prefix of every Redis key and channel of this deployment.
    pub cache_prefix: String,
    /// `db://` or `kafka://host:port,...`.
    pub bus_url: String,
    /// Partitions per topic (db:// log and Kafka topics created at start).
    pub bus_partitions: u32,
    pub kafka_replication: i32,
    /// How long a Kafka fetch may wait for data, in milliseconds (broker load vs. latency).
    pub kafka_fetch_wait_ms: u64,
    /// How long the Kafka producer gathers messages into a batch, in milliseconds.
    pub kafka_linger_ms: u64,
    /// Prefix of Kafka topic and consumer-group names.
    pub topic_prefix: String,
    /// This process's stable name in Kafka consumer groups (static membership); unique per
    /// running process, kept across its restarts (a pod name, a host and slot).
    pub kafka_instance_id: Option<String>,
    /// Consumer workers per group in this process (db:// bus on PostgreSQL).
    pub consumer_workers: usize,
    /// Attempts before an event is dead-lettered.
    pub consumer_max_attempts: u32,
    /// How long a coupon issue request waits for the bus to acknowledge its event before it is
    /// withdrawn and answered 503 `UNAVAILABLE`, in milliseconds.
    pub coupon_publish_timeout_ms: u64,
    /// An admitted coupon issue request whose event is still not on the bus this long after
    /// (its process died) is withdrawn and its task failed, in milliseconds; more than
    /// `coupon_publish_timeout_ms`.
    pub coupon_reconcile_after_ms: u64,
    /// A consumer group with waiting events that handles none for this long is reported
    /// stalled and restarted, in seconds.
    pub consumer_stall_secs: u64,
    /// Fallback polling interval of the relay and db:// consumers, in milliseconds.
    pub bus_poll_interval_ms: u64,
    /// Chaos testing only: consumers run every event twice, rolling the first run back as a
    /// crash would (`STAMPEDE_BUS_REDELIVER=true`).
    pub bus_redeliver: bool,
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of access tokens, in seconds.
    pub token_ttl_secs: u64,
    /// How long a priced order stays payable (also how long a saga may stay `PENDING` before
    /// its order expires), in seconds.
    pub payment_window_secs: u64,
    /// A saga `PENDING` this long is reported stuck and re-driven, in seconds.
    pub saga_stuck_secs: u64,
    /// How often the order sweeper looks for expired orders and stuck sagas, in milliseconds.
    pub order_sweep_ms: u64,
    /// The IANA time zone in which the popular-products ranking cuts days.
    pub ranking_time_zone: String,
    /// How long a popular-products answer is served again by this process, in milliseconds.
    pub popular_cache_ms: u64,
    /// Password hashes computed at once (each holds 19 MiB); 0: the number of cores.
    pub password_hash_threads: usize,
    /// Sign-ups and logins waiting for a hashing thread; one more gets 503 `OVERLOADED`.
    pub password_hash_queue: usize,
    /// How long a sign-up or login waits for a hashing thread, in milliseconds.
    pub password_hash_wait_ms: u64,
    /// How long a client may take to send a request's headers, in milliseconds; also how long
    /// an idle keep-alive connection stays open.
    pub http_header_timeout_ms: u64,
    /// How long a request may take until its response starts, in milliseconds (then 503
    /// `UNAVAILABLE`). Streams are bounded by their own rules once they have started.
    pub http_request_timeout_ms: u64,
    /// Connections served at once; further clients wait in the listen backlog.
    pub http_max_connections: usize,
    /// Requests handled at once; further ones get 503 `OVERLOADED` (health and metrics exempt).
    pub http_max_in_flight: usize,
    /// The largest request body, in bytes (413 beyond).
    pub http_body_limit_bytes: usize,
    /// Open SSE streams in this process (503 `OVERLOADED` beyond).
    pub sse_max_streams: usize,
    /// Open order streams of one user in this process (429 `RATE_LIMITED` beyond).
    pub sse_max_streams_per_user: usize,
    /// After SIGTERM, how long open connections get to finish before the process exits, in
    /// milliseconds. Streams end at once; clients resume with `Last-Event-ID`.
    pub shutdown_grace_ms: u64,
    /// The window of the rate limits below, in seconds.
    pub rate_window_secs: u64,
    /// Orders one user may place per window (429 `RATE_LIMITED` beyond).
    pub rate_orders: u64,
    /// Coupon issue requests one user may make per window.
    pub rate_coupon_issues: u64,
    /// Failed login attempts per email and client address per window.
    pub rate_logins: u64,
    /// Failed login attempts per email per window, from any address.
    pub rate_logins_per_email: u64,
    /// Sign-ups per client address per window.
    pub rate_signups: u64,
    /// Proxies (comma-separated addresses or networks, `10.0.0.0/8`) whose `X-Forwarded-For`
    /// names the client of the per-address limits; empty: the peer is the client.
    pub http_trusted_proxies: String,
    /// Unpaid orders (`PENDING` or `AWAITING_PAYMENT`) one user may hold (409
    /// `TOO_MANY_OPEN_ORDERS` beyond).
    pub max_open_orders: i64,
}

const DEFAULTS: &str = r#"
bind = "127.0.0.1:8080"
role = "all"
log_format = "text"
data_dir = "./data"
cache_url = "memory://"
cache_prefix = "stampede:"
bus_url = "db://"
bus_partitions = 8
kafka_replication = 1
kafka_fetch_wait_ms = 50
kafka_linger_ms = 2
topic_prefix = ""
consumer_workers = 2
consumer_max_attempts = 5
consumer_stall_secs = 60
coupon_publish_timeout_ms = 2000
coupon_reconcile_after_ms = 10000
bus_poll_interval_ms = 500
bus_redeliver = false
payment_window_secs = 600
saga_stuck_secs = 30
order_sweep_ms = 1000
ranking_time_zone = "Asia/Seoul"
popular_cache_ms = 1000
token_ttl_secs = 3600
password_hash_threads = 0
password_hash_queue = 64
password_hash_wait_ms = 2000
http_header_timeout_ms = 10000
http_request_timeout_ms = 15000
http_max_connections = 10000
http_max_in_flight = 1024
http_body_limit_bytes = 65536
sse_max_streams = 4096
sse_max_streams_per_user = 8
shutdown_grace_ms = 10000
rate_window_secs = 10
rate_orders = 30
rate_coupon_issues = 30
rate_logins = 10
rate_logins_per_email = 100
rate_signups = 20
http_trusted_proxies = ""
max_open_orders = 10
"#;

/// Keys with no default: unset means none.
const OPTIONAL_KEYS: &[&str] = &[
    "database_url",
    "database_schema",
    "kafka_instance_id",
    "jwt_secret",
];

/// Environment variables of the test suite, not of the server (`STAMPEDE_TEST_DATABASE_URL`, …).
const TEST_PREFIX: &str = "STAMPEDE_TEST_";

/// Every configuration key (in a file as it is; in the environment as `STAMPEDE_` + the key in
/// capitals).
pub fn keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = DEFAULTS
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.trim()))
        .chain(OPTIONAL_KEYS.iter().copied())
        .collect();
    keys.sort_unstable();
    keys
}

/// Refuses a `STAMPEDE_*` variable that names no key.
fn check_environment(variables: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let keys = keys();
    let spelled = |key: &str| format!("STAMPEDE_{}", key.to_uppercase());
    variables
        .filter(|variable| !variable.starts_with(TEST_PREFIX))
        .filter_map(|variable| Some(variable.strip_prefix("STAMPEDE_")?.to_lowercase()))
        .try_for_each(|key| known("variable", &key, &keys, spelled))
}

/// Refuses `key` unless it is one of `keys`, naming the nearest one: a typo would otherwise
/// start the server on a default without a word. `spelled` writes a key as its source does.
fn known(
    kind: &str,
    key: &str,
    keys: &[&str],
    spelled: impl Fn(&str) -> String,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        keys.contains(&key),
        "unknown configuration {kind} {}; did you mean {}?",
        spelled(key),
        spelled(nearest(key, keys))
    );
    Ok(())
}

/// Every layer of the configuration, with unknown variables and keys refused.
fn layers(file: Option<&std::path::Path>) -> anyhow::Result<config::Config> {
    check_environment(std::env::vars().map(|(name, _)| name))?;
    let file = match file {
        Some(path) => config::File::from(path).required(true),
        None => config::File::with_name("stampede").required(false),
    };
    let keys = keys();
    let in_file = config::Config::builder()
        .add_source(file.clone())
        .build()
        .context("reading the configuration file")?;
    let in_file: std::collections::BTreeMap<String, config::Value> = in_file.try_deserialize()?;
    for key in in_file.keys() {
        known("file key", key, &keys, |key| format!("{key:?}"))?;
    }
    config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
        .add_source(file)
        .add_source(config::Environment::with_prefix("STAMPEDE").try_parsing(true))
        .build()
        .context("reading the configuration")
}

/// Query parameters that carry a credential in a connection URL.
const SECRET_PARAMETERS: &[&str] = &["password", "pass", "pwd", "secret", "token", "sslpassword"];

/// `text` with the credentials of a URL replaced by `***`: the password of the user part (which
/// may itself hold `@`) and credential query parameters. Text that is no URL is returned as is.
fn redact_url(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let Ok(mut url) = url::Url::parse(text) else {
        // Not parsable (several hosts, say): everything before the last `@` of the authority.
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        return match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://***{}", &rest[at..]),
            None => text.to_owned(),
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    let redacted: Vec<(String, String)> = url
        .query_pairs()
        .map(|(key, value)| {
            let secret = SECRET_PARAMETERS.contains(&key.to_lowercase().as_str());
            let value = if secret {
                "***".to_owned()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    if !redacted.is_empty() {
        url.query_pairs_mut().clear().extend_pairs(redacted);
    }
    url.to_string()
}

/// The known key nearest to `key`.
fn nearest<'a>(key: &str, known: &[&'a str]) -> &'a str {
    known
        .iter()
        .min_by_key(|k| edit_distance(key, k))
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

impl Settings {
    /// Loads the settings: defaults, then `file` (or `./stampede.toml` if present), then the
    /// environment. An unknown `STAMPEDE_*` variable or file key is refused.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let settings: Self = layers(file)?
            .try_deserialize()
            .context("reading the configuration")?;
        settings.check()?;
        Ok(settings)
    }

    /// Refuses a value out of its range, naming the key, the value and the range (a value is
    /// never clamped quietly), and the settings that must agree with each other.
    pub fn check(&self) -> anyhow::Result<()> {
        for (key, value, min, max) in self.ranges() {
            anyhow::ensure!(
                (min..=max).contains(&value),
                "{key} (STAMPEDE_{}) is {value}, out of its range {min} to {max}",
                key.to_uppercase()
            );
        }
        self.issue_settings()?;
        self.ranking_settings()?;
        crate::limits::proxies::TrustedProxies::parse(&self.http_trusted_proxies)
            .context("http_trusted_proxies (STAMPEDE_HTTP_TRUSTED_PROXIES)")?;
        if let Some(secret) = &self.jwt_secret {
            crate::tokens::check_secret(secret.expose_secret())
                .context("jwt_secret (STAMPEDE_JWT_SECRET)")?;
        }
        Ok(())
    }

    /// Each numeric key with its value and its inclusive range.
    #[rustfmt::skip]
    fn ranges(&self) -> [(&'static str, i128, i128, i128); 33] {
        let n = |value: usize| value as i128;
        [
            ("bus_partitions", self.bus_partitions.into(), 1, 1_024),
            ("kafka_replication", self.kafka_replication.into(), 1, 16),
            ("kafka_fetch_wait_ms", self.kafka_fetch_wait_ms.into(), 1, 5_000),
            ("kafka_linger_ms", self.kafka_linger_ms.into(), 0, 60_000),
            ("consumer_workers", n(self.consumer_workers), 1, 64),
            ("consumer_max_attempts", self.consumer_max_attempts.into(), 1, 100),
            ("consumer_stall_secs", self.consumer_stall_secs.into(), 1, 3_600),
            ("coupon_publish_timeout_ms", self.coupon_publish_timeout_ms.into(), 1, 60_000),
            ("coupon_reconcile_after_ms", self.coupon_reconcile_after_ms.into(), 2, 3_600_000),
            ("bus_poll_interval_ms", self.bus_poll_interval_ms.into(), 10, 60_000),
            ("token_ttl_secs", self.token_ttl_secs.into(), 1, 30 * 86_400),
            ("payment_window_secs", self.payment_window_secs.into(), 1, 7 * 86_400),
            ("saga_stuck_secs", self.saga_stuck_secs.into(), 1, 86_400),
            ("order_sweep_ms", self.order_sweep_ms.into(), 10, 60_000),
            ("popular_cache_ms", self.popular_cache_ms.into(), 0, 60_000),
            ("password_hash_threads", n(self.password_hash_threads), 0, 256),
            ("password_hash_queue", n(self.password_hash_queue), 0, 100_000),
            ("password_hash_wait_ms", self.password_hash_wait_ms.into(), 1, 60_000),
            ("http_header_timeout_ms", self.http_header_timeout_ms.into(), 100, 600_000),
            ("http_request_timeout_ms", self.http_request_timeout_ms.into(), 100, 600_000),
            ("http_max_connections", n(self.http_max_connections), 1, 1_000_000),
            ("http_max_in_flight", n(self.http_max_in_flight), 1, 1_000_000),
            ("http_body_limit_bytes", n(self.http_body_limit_bytes), 1_024, 16 << 20),
            ("sse_max_streams", n(self.sse_max_streams), 1, 1_000_000),
            ("sse_max_streams_per_user", n(self.sse_max_streams_per_user), 1, 1_000),
            ("shutdown_grace_ms", self.shutdown_grace_ms.into(), 0, 600_000),
            ("rate_window_secs", self.rate_window_secs.into(), 1, 3_600),
            ("rate_orders", self.rate_orders.into(), 1, 1_000_000),
            ("rate_coupon_issues", self.rate_coupon_issues.into(), 1, 1_000_000),
            ("rate_logins", self.rate_logins.into(), 1, 1_000_000),
            ("rate_logins_per_email", self.rate_logins_per_email.into(), 1, 1_000_000),
            ("rate_signups", self.rate_signups.into(), 1, 1_000_000),
            ("max_open_orders", self.max_open_orders.into(), 1, 1_000),
        ]
    }

    /// The effective configuration, one `key = value` line per key, secrets and the passwords
    /// in URLs redacted (`stampede config show`).
    pub fn show(file: Option<&std::path::Path>) -> anyhow::Result<String> {
        let values: std::collections::BTreeMap<String, config::Value> =
            layers(file)?.try_deserialize()?;
        let mut shown = String::new();
        for key in keys() {
            let line = match values.get(key) {
                None => format!("# {key} (not set)\n"),
                Some(_) if key == "jwt_secret" => format!("{key} = \"(redacted)\"\n"),
                Some(value) => match &value.kind {
                    config::ValueKind::String(text) => format!("{key} = {:?}\n", redact_url(text)),
                    _ => format!("{key} = {value}\n"),
                },
            };
            shown.push_str(&line);
        }
        Ok(shown)
    }

    /// The built-in defaults alone: the embedded deployment on 127.0.0.1:8080.
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("the built-in defaults are valid")
    }

    /// The database URL, defaulting to the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}/stampede.db", self.data_dir.display()),
        }
    }

    /// Points these settings at `services` under `namespace` (letters, digits, `_`): its
    /// PostgreSQL schema, Redis key prefix and Kafka topic prefix, so that test runs and
    /// benchmarks share one set of services without seeing each other's data.
    pub fn use_shared_services(&mut self, services: &SharedServices, namespace: &str) {
        self.database_url = Some(services.database.clone().into());
        self.database_schema = Some(namespace.to_owned());
        self.cache_url = services.cache.clone().into();
        self.cache_prefix = format!("{namespace}:");
        self.bus_url = services.bus.clone();
        self.topic_prefix = format!("{namespace}-");
    }

    /// The ranking's settings; fails on an unknown time zone.
    pub fn ranking_settings(&self) -> anyhow::Result<ranking::RankingSettings> {
        let time_zone = self.ranking_time_zone.parse::<ranking::Tz>().map_err(|_| {
            anyhow::anyhow!(
                "STAMPEDE_RANKING_TIME_ZONE: unknown time zone {:?} (an IANA name such as Asia/Seoul)",
                self.ranking_time_zone
            )
        })?;
        Ok(ranking::RankingSettings {
            time_zone,
            answer_ttl: Duration::from_millis(self.popular_cache_ms),
        })
    }

    pub fn hashing_limits(&self) -> points::users::HashingLimits {
        let defaults = points::users::HashingLimits::default();
        points::users::HashingLimits {
            threads: match self.password_hash_threads {
                0 => defaults.threads,
                n => n,
            },
            queue: self.password_hash_queue,
            wait: Duration::from_millis(self.password_hash_wait_ms),
        }
    }

    /// First-come issuance's bounds; fails unless the reconciler waits longer than a publish.
    pub fn issue_settings(&self) -> anyhow::Result<coupons::IssueSettings> {
        anyhow::ensure!(
            self.coupon_reconcile_after_ms > self.coupon_publish_timeout_ms,
            "STAMPEDE_COUPON_RECONCILE_AFTER_MS ({}) must be more than \
             STAMPEDE_COUPON_PUBLISH_TIMEOUT_MS ({}): a request still publishing would be withdrawn",
            self.coupon_reconcile_after_ms,
            self.coupon_publish_timeout_ms
        );
        Ok(coupons::IssueSettings {
            publish_timeout: Duration::from_millis(self.coupon_publish_timeout_ms),
            reconcile_after: Duration::from_millis(self.coupon_reconcile_after_ms),
        })
    }

    pub fn order_settings(&self) -> orders::OrderSettings {
        orders::OrderSettings {
            max_open_orders: self.max_open_orders,
            payment_window: Duration::from_secs(self.payment_window_secs),
            stuck_after: Duration::from_secs(self.saga_stuck_secs),
            sweep_every: Duration::from_millis(self.order_sweep_ms),
        }
    }

    pub fn bus_settings(&self) -> eventbus::BusSettings {
        eventbus::BusSettings {
            partitions: self.bus_partitions,
            topic_prefix: self.topic_prefix.clone(),
            poll_interval: Duration::from_millis(self.bus_poll_interval_ms),
            workers: self.consumer_workers,
            retry: eventbus::RetryPolicy {
                max_attempts: self.consumer_max_attempts,
                redeliver: self.bus_redeliver,
                ..eventbus::RetryPolicy::default()
            },
            kafka_replication: self.kafka_replication,
            kafka_fetch_wait: Duration::from_millis(self.kafka_fetch_wait_ms),
            kafka_linger: Duration::from_millis(self.kafka_linger_ms),
            kafka_instance_id: self.kafka_instance_id.clone(),
            stall_after: Duration::from_secs(self.consumer_stall_secs),
            ..eventbus::BusSettings::default()
        }
    }

    /// A one-line description of the deployment for the start-up log: schemes only, no hosts,
    /// credentials or paths.
    pub fn describe(&self) -> String {
        let scheme = |url: &str| url.split("://").next().unwrap_or("?").to_owned();
        format!(
            "database={} cache={} bus={} role={:?}",
            scheme(&self.database_url()),
            scheme(self.cache_url.expose_secret()),
            scheme(&self.bus_url),
            self.role
        )
    }
}

/// PostgreSQL, Redis and Kafka URLs shared by test runs and benchmarks.
#[derive(Debug, Clone)]
pub struct SharedServices {
    pub database: String,
    pub cache: String,
    pub bus: String,
}

impl SharedServices {
    /// From `STAMPEDE_TEST_DATABASE_URL`, `STAMPEDE_TEST_CACHE_URL` and
    /// `STAMPEDE_TEST_BUS_URL`; `None` unless all three are set.
    pub fn from_test_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok();
        Some(Self {
            database: var("STAMPEDE_TEST_DATABASE_URL")?,
            cache: var("STAMPEDE_TEST_CACHE_URL")?,
            bus: var("STAMPEDE_TEST_BUS_URL")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_variable_is_refused_with_the_nearest_known_one() {
        let vars = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let error = check_environment(vars(&["PATH", "STAMPEDE_DATABSE_URL"]).into_iter())
            .unwrap_err()
            .to_string();
        assert!(error.contains("STAMPEDE_DATABSE_URL"), "{error}");
        assert!(
            error.contains("did you mean STAMPEDE_DATABASE_URL?"),
            "{error}"
        );
        let known = vars(&[
            "STAMPEDE_BIND",
            "STAMPEDE_JWT_SECRET",
            "STAMPEDE_LOG_FORMAT",
            "STAMPEDE_TEST_BUS_URL",
        ]);
        check_environment(known.into_iter()).unwrap();
        for key in [
            "bind",
            "database_url",
            "jwt_secret",
            "max_open_orders",
            "log_format",
        ] {
            assert!(keys().contains(&key), "{key}");
        }
    }

    #[test]
    fn an_unknown_file_key_is_refused_and_show_redacts_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stampede.toml");
        std::fs::write(&file, "max_open_order = 3\n").unwrap();
        let error = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
        assert!(
            error.contains("did you mean \"max_open_orders\"?"),
            "{error}"
        );
        std::fs::write(
            &file,
            "database_url = \"postgres://app:hunter2@db/shop\"\njwt_secret = \"0123456789abcdefghij\"\n",
        )
        .unwrap();
        let shown = Settings::show(Some(&file)).unwrap();
        assert!(
            shown.contains("database_url = \"postgres://app:***@db/shop\""),
            "{shown}"
        );
        assert!(shown.contains("jwt_secret = \"(redacted)\""), "{shown}");
        assert!(shown.contains("# kafka_instance_id (not set)"), "{shown}");
        for (url, redacted) in [
            ("postgres://app:p@ss@db/x", "postgres://app:***@db/x"),
            (
                "postgres://db/x?user=app&password=hunter2&sslmode=require",
                "postgres://db/x?user=app&password=***&sslmode=require",
            ),
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            (
                "kafka://u:p@w@h1:9092,h2:9092",
                "kafka://***@h1:9092,h2:9092",
            ),
            ("redis://cache:6379", "redis://cache:6379"),
            ("memory://", "memory://"),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
        assert!(
            !shown.contains("hunter2") && !shown.contains("0123456789"),
            "{shown}"
        );
    }

    #[test]
    fn a_value_out_of_range_is_refused_not_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stampede.toml");
        for (line, expected) in [
            (
                "bus_partitions = 0",
                "bus_partitions (STAMPEDE_BUS_PARTITIONS) is 0, out of its range 1 to 1024",
            ),
            (
                "max_open_orders = -1",
                "max_open_orders (STAMPEDE_MAX_OPEN_ORDERS) is -1, out of its range 1 to 1000",
            ),
            (
                "kafka_fetch_wait_ms = 60000",
                "kafka_fetch_wait_ms (STAMPEDE_KAFKA_FETCH_WAIT_MS) is 60000",
            ),
            (
                "coupon_reconcile_after_ms = 1000",
                "must be more than STAMPEDE_COUPON_PUBLISH_TIMEOUT_MS",
            ),
            ("ranking_time_zone = \"Mars/Olympus\"", "unknown time zone"),
        ] {
            std::fs::write(&file, line).unwrap();
            let error = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
            assert!(error.contains(expected), "{line}: {error}");
        }
        std::fs::write(&file, "bus_partitions = 1024\nkafka_linger_ms = 0").unwrap();
        assert_eq!(Settings::load(Some(&file)).unwrap().bus_partitions, 1024);
        Settings::defaults().check().unwrap();
    }

    #[test]
    fn the_example_file_documents_every_key_and_loads_as_the_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../stampede.example.toml");
        let example = std::fs::read_to_string(&path).unwrap();
        for key in keys() {
            let listed = example.lines().any(|l| {
                l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} = "))
            });
            assert!(listed, "stampede.example.toml lacks {key}");
        }
        for (key, _, min, max) in Settings::defaults().ranges() {
            let stated = format!("# range: {min} to {max}\n{key} = ");
            assert!(
                example.contains(&stated),
                "stampede.example.toml lacks {stated:?}"
            );
        }
        let loaded = config::Config::builder()
            .add_source(config::File::from(path.as_path()))
            .build()
            .and_then(config::Config::try_deserialize::<Settings>)
            .unwrap();
        assert_eq!(loaded.bind, Settings::defaults().bind);
        assert_eq!(loaded.max_open_orders, Settings::defaults().max_open_orders);
    }

    #[test]
    fn defaults_select_the_embedded_deployment_and_secrets_do_not_print() {
        let mut settings = Settings::defaults();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.role, Role::All);
        assert_eq!(settings.database_url(), "sqlite://./data/stampede.db");
        assert_eq!(
            settings.describe(),
            "database=sqlite cache=memory bus=db role=All"
        );
        settings.database_url = Some("postgres://app:hunter2@db.internal/shop".into());
        settings.jwt_secret = Some("top-secret".into());
        let shown = format!("{settings:?} {}", settings.describe());
        assert!(
            !shown.contains("hunter2") && !shown.contains("top-secret"),
            "{shown}"
        );
    }

    #[test]
    fn a_file_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stampede.toml");
        std::fs::write(
            &path,
            "bind = \"127.0.0.1:0\"\nbus_partitions = 3\nrole = \"worker\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(settings.bind.port(), 0);
        assert_eq!(settings.bus_partitions, 3);
        assert_eq!(settings.role, Role::Worker);
    }

    #[test]
    fn the_ranking_time_zone_is_an_iana_name() {
        let mut settings = Settings::defaults();
        let ranking = settings.ranking_settings().unwrap();
        assert_eq!(ranking.time_zone.name(), "Asia/Seoul");
        assert_eq!(ranking.answer_ttl, Duration::from_secs(1));
        settings.ranking_time_zone = "Europe/Berlin".into();
        assert_eq!(
            settings.ranking_settings().unwrap().time_zone.name(),
            "Europe/Berlin"
        );
        settings.ranking_time_zone = "Mars/Olympus".into();
        let error = settings.ranking_settings().unwrap_err().to_string();
        assert!(error.contains("STAMPEDE_RANKING_TIME_ZONE"), "{error}");
    }
}
