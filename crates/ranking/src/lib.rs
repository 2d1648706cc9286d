//! The ranking context: units sold per product per day, and the popular-products query
//! (`docs/design.md`, "Events"; `ARCHITECTURE.md`, "Ranking").
//!
//! [`record`] consumes `product-sold` (one event per paid order line) and adds its units to the
//! sale day's counts, at most once per line: the day keeps the lines it counted, so a
//! redelivered event, or a line the [`rebuild`] already counted, adds nothing. Days are cut in
//! the configured time zone (default `Asia/Seoul`) and kept for the longest window, [`MAX_DAYS`].
//! Redis holds each day as a sorted set beside the set of its lines, changed by one Lua script;
//! the embedded default holds the same in this process ([`store`]).
//!
//! [`popular`] sums the last `days` days, best first with ties by product id, names the
//! products through the catalog's batched read and keeps each answer briefly. The counts live
//! only in the cache: when they are missing (Redis flushed or restarted, a new embedded
//! process) the first read [`rebuild`]s them from the paid orders in the database; adding a
//! line is idempotent, so a rebuild and the consumer may run at the same time.

use std::{sync::Arc, time::Duration};

use cache::Cache;
use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use db::Db;
use eventbus::Handler;

mod config;
pub mod popular;
pub mod rebuild;
pub mod record;
mod store;

#[cfg(test)]
mod tests;

pub use chrono_tz::Tz;
pub use config::RankingConfig;
pub use popular::PopularProduct;

/// The longest window a query may ask for, in days; day counts are kept that long.
pub const MAX_DAYS: u32 = 30;
/// The most products a query may ask for.
pub const MAX_LIMIT: u32 = 100;

/// Why a ranking query was refused.
#[derive(Debug, thiserror::Error)]
pub enum RankingError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// How the ranking cuts days and how long it keeps an answer.
#[derive(Debug, Clone)]
pub struct RankingSettings {
    /// Days start at midnight here.
    pub time_zone: Tz,
    /// How long an answer of [`popular`] is served again (per process).
    pub answer_ttl: Duration,
}

impl Default for RankingSettings {
    fn default() -> Self {
        Self {
            time_zone: chrono_tz::Asia::Seoul,
            answer_ttl: Duration::from_secs(1),
        }
    }
}

/// The ranking of one process: its counts store, the database it rebuilds from and the
/// answers it keeps. Cheap to clone.
#[derive(Clone)]
pub struct Ranking {
    db: Db,
    store: store::Store,
    settings: RankingSettings,
    answers: Arc<popular::Answers>,
    /// One rebuild at a time in this process.
    rebuilding: Arc<tokio::sync::Mutex<()>>,
}

impl Ranking {
    pub fn new(db: Db, cache: &Cache, settings: RankingSettings) -> Self {
        Self {
            db,
            store: store::Store::new(cache),
            settings,
            answers: Arc::default(),
            rebuilding: Arc::default(),
        }
    }

    /// The consumer that counts `product-sold`.
    pub fn handlers(&self) -> Vec<Arc<dyn Handler>> {
        vec![Arc::new(record::RecordSale::new(self.clone()))]
    }

    /// The day `at` falls on, in the ranking's time zone.
    pub fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        day_of(self.settings.time_zone, at)
    }

    /// When `day` starts, in the ranking's time zone.
    pub fn day_start(&self, day: NaiveDate) -> DateTime<Utc> {
        day_start(self.settings.time_zone, day)
    }

    /// When the counts of `day` may go: once no window of [`MAX_DAYS`] reaches it any more,
    /// plus a day.
    fn day_expiry(&self, day: NaiveDate) -> DateTime<Utc> {
        self.day_start(day + chrono::Days::new(u64::from(MAX_DAYS) + 1))
    }

    /// The last `days` days up to `now`, today first.
    fn window(&self, now: DateTime<Utc>, days: u32) -> Vec<NaiveDate> {
        let today = self.day_of(now);
        (0..days)
            .map(|back| today - chrono::Days::new(u64::from(back)))
            .collect()
    }
}

/// The day `at` falls on in `tz`.
fn day_of(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The first instant of `day` in `tz`: midnight, or the end of the daylight-saving gap that
/// skipped it.
fn day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    (0..24 * 60)
        .step_by(15)
        .find_map(|minutes| {
            let local = day.and_hms_opt(0, 0, 0).expect("midnight exists")
                + chrono::Duration::minutes(minutes);
            tz.from_local_datetime(&local).earliest()
        })
        .expect("a day has a first quarter hour")
        .with_timezone(&Utc)
}
