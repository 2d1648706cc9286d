//! The in-process cache of the embedded default.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::hub::Hub;

/// A value and the instant it expires, if it does.
type Entry = (String, Option<Instant>);

/// Key-value entries with optional expiry, and a local pub/sub hub. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    hub: Hub,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let mut entries = self.entries.lock().expect("cache lock");
        match entries.get(key) {
            Some((_, Some(expires))) if *expires <= Instant::now() => {
                entries.remove(key);
                None
            }
            Some((value, _)) => Some(value.clone()),
            None => None,
        }
    }

    pub fn set(&self, key: &str, value: &str, ttl: Option<Duration>) {
        let mut entries = self.entries.lock().expect("cache lock");
        prune(&mut entries);
        entries.insert(
            key.to_owned(),
            (value.to_owned(), ttl.map(|ttl| Instant::now() + ttl)),
        );
    }

    /// See [`crate::Cache::hit`].
    pub fn hit(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock");
        let current = entries
            .get(key)
            .and_then(|(count, expires)| Some((count.parse::<u64>().ok()?, (*expires)?)))
            .filter(|(_, ends)| *ends > now);
        let (count, ends) = match current {
            Some((count, ends)) => (count + 1, ends),
            None => {
                prune(&mut entries);
                (1, now + window)
            }
        };
        entries.insert(key.to_owned(), (count.to_string(), Some(ends)));
        (count, ends - now)
    }

    pub fn delete(&self, key: &str) {
        self.entries.lock().expect("cache lock").remove(key);
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// Drops expired entries once the map is large, so that keys written once (rate-limit windows
/// of passing users) cannot grow it without bound.
fn prune(entries: &mut HashMap<String, Entry>) {
    if entries.len() >= 100_000 {
        let now = Instant::now();
        entries.retain(|_, (_, expires)| expires.is_none_or(|at| at > now));
    }
}
