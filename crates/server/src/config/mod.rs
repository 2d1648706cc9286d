//! Layered configuration: built-in defaults (the embedded deployment), then an optional TOML
//! file (`--config FILE`, or `stampede.toml` in the working directory), then `STAMPEDE_*`
//! environment variables ([`sources`]). Each context owns its section (`[orders]` is
//! `orders::OrdersConfig`, `[http]` is `limits::HttpConfig`, …): its keys and defaults, the
//! ranges of its numbers and the settings it makes. URLs and secrets never appear in `Debug`
//! output, logs or `config show`.

mod show;
mod sources;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::limits::{HttpConfig, RateConfig, SseConfig};

pub use sources::{renamed_variables, variables};

/// Which parts of Stampede a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: one line per event, span fields inline.
    Text,
    /// For log pipelines: one JSON object per line, with the fields of every enclosing span.
    Json,
}

/// The whole configuration: a few process-wide keys, then one section per context.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub bind: SocketAddr,
    pub role: Role,
    pub log_format: LogFormat,
    /// Where the embedded deployment keeps its files (SQLite database, generated secrets).
    pub data_dir: PathBuf,
    /// Prefix of Kafka topic and consumer-group names.
    pub topic_prefix: String,
    /// The token signing secret; unset: a random one kept in the database.
    #[serde(serialize_with = "show::secret")]
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of access tokens, in seconds.
    pub token_ttl_secs: u64,
    /// After SIGTERM, how long open connections get to finish before the process exits, in
    /// milliseconds. Streams end at once; clients resume with `Last-Event-ID`.
    pub shutdown_grace_ms: u64,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub bus: eventbus::BusConfig,
    pub kafka: eventbus::KafkaConfig,
    pub consumer: eventbus::ConsumerConfig,
    pub coupon: coupons::CouponConfig,
    pub orders: orders::OrdersConfig,
    pub ranking: ranking::RankingConfig,
    pub room: rooms::RoomConfig,
    pub password: points::users::PasswordConfig,
    pub http: HttpConfig,
    pub sse: SseConfig,
    pub rate: RateConfig,
}

/// `[database]`: where the data lives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`; default: `sqlite://<data_dir>/stampede.db`.
    #[serde(serialize_with = "show::optional_url")]
    pub url: Option<SecretString>,
    /// PostgreSQL schema to use (created if missing); default: the connection's search path.
    pub schema: Option<String>,
}

/// `[cache]`: gates, rates, rankings and stream wake-ups.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory://` or `redis://...`.
    #[serde(serialize_with = "show::url")]
    pub url: SecretString,
    /// Prefix of every Redis key and channel of this deployment.
    pub prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: "memory://".into(),
            prefix: "stampede:".to_owned(),
        }
    }
}

impl Default for Settings {
    /// The embedded deployment on 127.0.0.1:8080.
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            role: Role::All,
            log_format: LogFormat::Text,
            data_dir: PathBuf::from("./data"),
            topic_prefix: String::new(),
            jwt_secret: None,
            token_ttl_secs: 3_600,
            shutdown_grace_ms: 10_000,
            database: DatabaseConfig::default(),
            cache: CacheConfig::default(),
            bus: Default::default(),
            kafka: Default::default(),
            consumer: Default::default(),
            coupon: Default::default(),
            orders: Default::default(),
            ranking: Default::default(),
            room: Default::default(),
            password: Default::default(),
            http: HttpConfig::default(),
            sse: SseConfig::default(),
            rate: RateConfig::default(),
        }
    }
}

/// A numeric key (`section.key`, or `key` for a process-wide one) with its value and its
/// inclusive range.
type Range = (String, i128, i128, i128);

impl Settings {
    /// Loads the settings: defaults, then `file` (or `./stampede.toml` if present), then the
    /// environment. An unknown `STAMPEDE_*` variable or file key is refused.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let settings: Self = sources::layers(file)?
            .try_deserialize()
            .context("reading the configuration")?;
        settings.check()?;
        Ok(settings)
    }

    /// Refuses a value out of its range, naming the key, its variable, the value and the range
    /// (a value is never clamped quietly), and what a section's own rules refuse.
    pub fn check(&self) -> anyhow::Result<()> {
        for (key, value, min, max) in self.ranges() {
            anyhow::ensure!(
                (min..=max).contains(&value),
                "{key} ({}) is {value}, out of its range {min} to {max}",
                sources::variable(&key)
            );
        }
        let section = |name: &str| format!("[{name}] (STAMPEDE_{}_*)", name.to_uppercase());
        self.coupon.settings().context(section("coupon"))?;
        self.ranking.settings().context(section("ranking"))?;
        self.http.validate().context(section("http"))?;
        if let Some(secret) = &self.jwt_secret {
            crate::tokens::check_secret(secret.expose_secret())
                .context("jwt_secret (STAMPEDE_JWT_SECRET)")?;
        }
        Ok(())
    }

    /// Every numeric key with its value and its inclusive range.
    fn ranges(&self) -> Vec<Range> {
        let in_section = |name: &str, ranges: Vec<(&str, i128, i128, i128)>| {
            ranges
                .into_iter()
                .map(|(key, value, min, max)| (format!("{name}.{key}"), value, min, max))
                .collect::<Vec<_>>()
        };
        let mut ranges: Vec<Range> = vec![
            (
                "token_ttl_secs".into(),
                self.token_ttl_secs.into(),
                1,
                30 * 86_400,
            ),
            (
                "shutdown_grace_ms".into(),
                self.shutdown_grace_ms.into(),
                0,
                600_000,
            ),
        ];
        for section in [
            in_section("bus", self.bus.ranges()),
            in_section("kafka", self.kafka.ranges()),
            in_section("consumer", self.consumer.ranges()),
            in_section("coupon", self.coupon.ranges()),
            in_section("orders", self.orders.ranges()),
            in_section("ranking", self.ranking.ranges()),
            in_section("room", self.room.ranges()),
            in_section("password", self.password.ranges()),
            in_section("http", self.http.ranges()),
            in_section("sse", self.sse.ranges()),
            in_section("rate", self.rate.ranges()),
        ] {
            ranges.extend(section);
        }
        ranges
    }

    /// The database URL, defaulting to the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}/stampede.db", self.data_dir.display()),
        }
    }

    /// Points these settings at a shared PostgreSQL, Redis and bus under `namespace` (letters,
    /// digits, `_`): its own schema, Redis key prefix and Kafka topic prefix, so that several
    /// deployments (test runs, benchmarks) share one set of services without seeing each
    /// other's data.
    pub fn share_services(&mut self, database: &str, cache: &str, bus: &str, namespace: &str) {
        self.database.url = Some(database.into());
        self.database.schema = Some(namespace.to_owned());
        self.cache.url = cache.into();
        self.cache.prefix = format!("{namespace}:");
        self.bus.url = bus.to_owned();
        self.topic_prefix = format!("{namespace}-");
    }

    pub fn bus_settings(&self) -> eventbus::BusSettings {
        eventbus::BusSettings::configured(
            &self.bus,
            &self.kafka,
            &self.consumer,
            &self.topic_prefix,
        )
    }

    /// A one-line description of the deployment for the start-up log: schemes only, no hosts,
    /// credentials or paths.
    pub fn describe(&self) -> String {
        let scheme = |url: &str| url.split("://").next().unwrap_or("?").to_owned();
        format!(
            "database={} cache={} bus={} role={:?}",
            scheme(&self.database_url()),
            scheme(self.cache.url.expose_secret()),
            scheme(&self.bus.url),
            self.role
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn load(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stampede.toml");
        std::fs::write(&file, text).unwrap();
        Settings::load(Some(&file))
    }

    #[test]
    fn an_unknown_file_key_is_refused_with_the_nearest_known_one() {
        let error = format!("{:#}", load("[orders]\nmax_opn = 3\n").unwrap_err());
        assert!(
            error.contains("\"max_opn\" in [orders]; did you mean \"max_open\" in [orders]?"),
            "{error}"
        );
        let error = format!("{:#}", load("bindd = \"127.0.0.1:0\"\n").unwrap_err());
        assert!(error.contains("did you mean \"bind\"?"), "{error}");
    }

    #[test]
    fn a_flat_key_of_earlier_releases_is_refused_naming_its_section() {
        for (line, expected) in [
            ("http_max_connections = 5", "\"max_connections\" in [http]"),
            ("max_open_orders = 5", "\"max_open\" in [orders]"),
            ("bus_url = \"db://\"", "\"url\" in [bus]"),
        ] {
            let error = format!("{:#}", load(line).unwrap_err());
            assert!(
                error.contains(&format!("is now {expected}")),
                "{line}: {error}"
            );
        }
    }

    #[test]
    fn show_redacts_secrets_and_the_credentials_in_urls() {
        let settings = load(
            "jwt_secret = \"0123456789abcdefghijklmnopqrstuvwxyz\"\n\
             [database]\nurl = \"postgres://app:hunter2@db/shop\"\n",
        )
        .unwrap();
        let shown = settings.show();
        assert!(
            shown.contains("[database]\n# schema (not set)\nurl = \"postgres://app:***@db/shop\""),
            "{shown}"
        );
        assert!(shown.contains("jwt_secret = \"(redacted)\""), "{shown}");
        assert!(shown.contains("\n# instance_id (not set)\n"), "{shown}");
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
            (
                "redis+cluster://:hunter2@r1:7000,r2:7000",
                "redis+cluster://***@r1:7000,r2:7000",
            ),
            ("memory://", "memory://"),
        ] {
            assert_eq!(show::redact_url(url), redacted, "{url}");
        }
        assert!(
            !shown.contains("hunter2") && !shown.contains("0123456789"),
            "{shown}"
        );
    }

    #[test]
    fn a_value_out_of_range_is_refused_not_clamped() {
        for (text, expected) in [
            (
                "[bus]\npartitions = 0",
                "bus.partitions (STAMPEDE_BUS_PARTITIONS) is 0, out of its range 1 to 1024",
            ),
            (
                "[orders]\nmax_open = -1",
                "orders.max_open (STAMPEDE_ORDERS_MAX_OPEN) is -1, out of its range 1 to 1000",
            ),
            (
                "[kafka]\nfetch_wait_ms = 60000",
                "kafka.fetch_wait_ms (STAMPEDE_KAFKA_FETCH_WAIT_MS) is 60000",
            ),
            (
                "[coupon]\nreconcile_after_ms = 1000",
                "[coupon] (STAMPEDE_COUPON_*): reconcile_after_ms (1000) must be more than publish_timeout_ms (2000)",
            ),
            ("[ranking]\ntime_zone = \"Mars/Olympus\"", "unknown time zone"),
            ("[http]\ntrusted_proxies = \"10.0.0.0/99\"", "[http]"),
        ] {
            let error = format!("{:#}", load(text).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
        let settings = load("[bus]\npartitions = 1024\n[kafka]\nlinger_ms = 0").unwrap();
        assert_eq!(settings.bus.partitions, 1024);
        Settings::default().check().unwrap();
    }

    #[test]
    fn the_example_file_documents_every_key_and_loads_as_the_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../stampede.example.toml");
        let example = std::fs::read_to_string(&path).unwrap();
        let section_of = |key: &str| -> String {
            let (section, _) = key.split_once('.').unwrap_or(("", key));
            let start = match section {
                "" => 0,
                name => example
                    .find(&format!("\n[{name}]\n"))
                    .unwrap_or_else(|| panic!("stampede.example.toml lacks [{name}]")),
            };
            let rest = &example[start + 1..];
            let end = rest.find("\n[").map_or(rest.len(), |end| end + 1);
            rest[..end].to_owned()
        };
        for key in sources::keys() {
            let name = key.split_once('.').map_or(key.as_str(), |(_, name)| name);
            let listed = section_of(&key).lines().any(|l| {
                l.starts_with(&format!("{name} = ")) || l.starts_with(&format!("# {name} = "))
            });
            assert!(listed, "stampede.example.toml lacks {key}");
        }
        for (key, _, min, max) in Settings::default().ranges() {
            let name = key.split_once('.').map_or(key.as_str(), |(_, name)| name);
            let stated = format!("# range: {min} to {max}\n{name} = ");
            assert!(
                section_of(&key).contains(&stated),
                "stampede.example.toml lacks {stated:?} for {key}"
            );
        }
        let loaded = Settings::load(Some(&path)).unwrap();
        assert_eq!(loaded.show(), Settings::default().show());
    }

    #[test]
    fn defaults_select_the_embedded_deployment_and_secrets_do_not_print() {
        let mut settings = Settings::default();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.role, Role::All);
        assert_eq!(settings.database_url(), "sqlite://./data/stampede.db");
        assert_eq!(
            settings.describe(),
            "database=sqlite cache=memory bus=db role=All"
        );
        settings.database.url = Some("postgres://app:hunter2@db.internal/shop".into());
        settings.jwt_secret = Some("top-secret".into());
        let shown = format!("{settings:?} {} {}", settings.describe(), settings.show());
        assert!(
            !shown.contains("hunter2") && !shown.contains("top-secret"),
            "{shown}"
        );
    }

    #[test]
    fn a_file_overrides_the_defaults_and_sections_keep_the_others() {
        let settings =
            load("bind = \"127.0.0.1:0\"\nrole = \"worker\"\n[bus]\npartitions = 3\n").unwrap();
        assert_eq!(settings.bind.port(), 0);
        assert_eq!(settings.bus.partitions, 3);
        assert_eq!(settings.bus.url, "db://");
        assert_eq!(settings.role, Role::Worker);
    }

    #[test]
    fn the_ranking_time_zone_is_an_iana_name() {
        let mut settings = Settings::default();
        let ranking = settings.ranking.settings().unwrap();
        assert_eq!(ranking.time_zone.name(), "Asia/Seoul");
        assert_eq!(ranking.answer_ttl, Duration::from_secs(1));
        settings.ranking.time_zone = "Europe/Berlin".into();
        assert_eq!(
            settings.ranking.settings().unwrap().time_zone.name(),
            "Europe/Berlin"
        );
        settings.ranking.time_zone = "Mars/Olympus".into();
        let error = format!("{:#}", settings.check().unwrap_err());
        assert!(error.contains("STAMPEDE_RANKING_*"), "{error}");
    }
}
