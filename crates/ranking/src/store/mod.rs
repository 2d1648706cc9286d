//! Where the day counts live: Redis (a sorted set per day, product → units, beside the set of
//! the lines it counted) or this process's memory. Both add lines idempotently and answer
//! "not built" when the counts were lost, so the caller rebuilds them.

mod memory;
mod redis;

use std::collections::HashMap;

use cache::Cache;
use chrono::{DateTime, NaiveDate, Utc};

/// Units of a product in one paid order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    pub order_id: i64,
    pub product_option_id: i64,
    pub product_id: i64,
    pub quantity: i64,
}

impl Line {
    /// The line's name among its day's counted lines.
    fn id(&self) -> String {
        format!("{}:{}", self.order_id, self.product_option_id)
    }
}

#[derive(Clone)]
pub(crate) enum Store {
    Memory(memory::MemoryStore),
    Redis(cache::RedisCache),
}

impl Store {
    pub fn new(cache: &Cache) -> Self {
        match cache {
            Cache::Memory(_) => Store::Memory(memory::MemoryStore::default()),
            Cache::Redis(r) => Store::Redis(r.clone()),
        }
    }

    /// Adds the units of the `lines` sold on `day` that the day has not counted yet, keeping
    /// the day until `expires`; how many it added.
    pub async fn add(
        &self,
        day: NaiveDate,
        expires: DateTime<Utc>,
        lines: &[Line],
    ) -> anyhow::Result<u64> {
        match self {
            Store::Memory(m) => Ok(m.add(day, expires, lines)),
            Store::Redis(r) => redis::add(r, day, expires, lines).await,
        }
    }

    /// Units per product summed over `days`; `None` when the counts are not built.
    pub async fn totals(&self, days: &[NaiveDate]) -> anyhow::Result<Option<HashMap<i64, i64>>> {
        match self {
            Store::Memory(m) => Ok(m.totals(days)),
            Store::Redis(r) => redis::totals(r, days).await,
        }
    }

    /// Records that the counts hold every paid line of the window.
    pub async fn mark_built(&self) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                m.mark_built();
                Ok(())
            }
            Store::Redis(r) => redis::mark_built(r).await,
        }
    }

    /// Forgets the counts of `days` and that they were built.
    pub async fn clear(&self, days: &[NaiveDate]) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                m.clear();
                Ok(())
            }
            Store::Redis(r) => redis::clear(r, days).await,
        }
    }
}

/// Every ranking key carries the hash tag `{ranking}`: the totals script reads the marker and
/// all the days at once, so on a Redis Cluster they live on one node (the ranking is light:
/// one batch a second at most, one read a minute per instance).
fn day_key(day: NaiveDate) -> String {
    format!("{{ranking}}:day:{}", day.format("%Y-%m-%d"))
}

fn lines_key(day: NaiveDate) -> String {
    format!("{}:lines", day_key(day))
}

/// Present while the counts are built (no expiry: a flush or restart removes it).
const BUILT_KEY: &str = "{ranking}:built";
