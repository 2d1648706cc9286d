//! The in-process cache of the embedded default: bounded in entries and bytes, and expired
//! entries dropped as they come due, never by a scan of the whole map.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::hub::Hub;

/// How much the in-process cache may hold. Past either bound the entry that expires soonest
/// goes first (rate-limit windows of a few seconds before pending tasks kept for a day), and
/// entries without an expiry last.
#[derive(Debug, Clone, Copy)]
pub struct MemoryBounds {
    pub max_entries: usize,
    /// Keys and values, plus [`ENTRY_OVERHEAD`] per entry.
    pub max_bytes: usize,
}

impl Default for MemoryBounds {
    fn default() -> Self {
        Self {
            max_entries: 500_000,
            max_bytes: 128 << 20,
        }
    }
}

/// What one entry costs beside its key and value (map slot, expiry index node, counts).
pub const ENTRY_OVERHEAD: usize = 96;

/// A value and the instant it expires, if it does.
struct Entry {
    value: String,
    due: Due,
}

/// An entry's place in the eviction order: its expiry (none: evicted last) and a sequence
/// number that makes every place unique.
type Due = (Option<Instant>, u64);

#[derive(Default)]
struct Entries {
    map: HashMap<Arc<str>, Entry>,
    /// Entries that expire, soonest first; those that never do are in `forever`, oldest first.
    expiring: BTreeSet<(Instant, u64, Arc<str>)>,
    forever: BTreeSet<(u64, Arc<str>)>,
    bytes: usize,
    next: u64,
}

impl Entries {
    fn cost(key: &str, value: &str) -> usize {
        key.len() + value.len() + ENTRY_OVERHEAD
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let (key, entry) = self.map.remove_entry(key)?;
        self.bytes -= Self::cost(&key, &entry.value);
        match entry.due {
            (Some(at), n) => self.expiring.remove(&(at, n, key)),
            (None, n) => self.forever.remove(&(n, key)),
        };
        Some(entry)
    }

    fn insert(&mut self, key: &str, value: String, expires: Option<Instant>, bounds: MemoryBounds) {
        self.remove(key);
        self.drop_expired(Instant::now());
        let key: Arc<str> = Arc::from(key);
        let n = self.next;
        self.next += 1;
        match expires {
            Some(at) => self.expiring.insert((at, n, key.clone())),
            None => self.forever.insert((n, key.clone())),
        };
        self.bytes += Self::cost(&key, &value);
        self.map.insert(
            key,
            Entry {
                value,
                due: (expires, n),
            },
        );
        while self.map.len() > bounds.max_entries || self.bytes > bounds.max_bytes {
            let first = match self.expiring.first() {
                Some((_, _, key)) => key.clone(),
                None => match self.forever.first() {
                    Some((_, key)) => key.clone(),
                    None => break,
                },
            };
            self.remove(&first);
        }
    }

    /// Drops the entries due by `now`: each costs one step of the expiry order, so the work is
    /// paid by the writes that made them.
    fn drop_expired(&mut self, now: Instant) {
        while let Some((at, _, key)) = self.expiring.first() {
            if *at > now {
                break;
            }
            let key = key.clone();
            self.remove(&key);
        }
    }

    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        let expired =
            matches!(self.map.get(key), Some(Entry { due: (Some(at), _), .. }) if *at <= now);
        if expired {
            self.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }
}

/// Key-value entries with optional expiry, and a local pub/sub hub. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryCache {
    entries: Arc<Mutex<Entries>>,
    bounds: MemoryBounds,
    hub: Hub,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache that holds at most `bounds`.
    pub fn with_bounds(bounds: MemoryBounds) -> Self {
        Self {
            bounds,
            ..Self::default()
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let mut entries = self.entries.lock().expect("cache lock");
        entries
            .live(key, Instant::now())
            .map(|entry| entry.value.clone())
    }

    pub fn set(&self, key: &str, value: &str, ttl: Option<Duration>) {
        let expires = ttl.map(|ttl| Instant::now() + ttl);
        self.entries.lock().expect("cache lock").insert(
            key,
            value.to_owned(),
            expires,
            self.bounds,
        );
    }

    /// See [`crate::Cache::hit`].
    pub fn hit(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock");
        let current = entries.live(key, now).and_then(|entry| {
            let count = entry.value.parse::<u64>().ok()?;
            Some((count, entry.due.0?))
        });
        let (count, ends) = match current {
            Some((count, ends)) => (count + 1, ends),
            None => (1, now + window),
        };
        entries.insert(key, count.to_string(), Some(ends), self.bounds);
        (count, ends - now)
    }

    /// See [`crate::Cache::forgive`].
    pub fn forgive(&self, key: &str) {
        let mut entries = self.entries.lock().expect("cache lock");
        let Some(entry) = entries.live(key, Instant::now()) else {
            return;
        };
        let Some(count) = entry.value.parse::<u64>().ok().filter(|n| *n > 0) else {
            return;
        };
        // A smaller count is never longer: the bytes counted shrink by the difference.
        let shorter = std::mem::replace(&mut entry.value, (count - 1).to_string());
        let shrunk = shorter.len() - entry.value.len();
        entries.bytes -= shrunk;
    }

    pub fn delete(&self, key: &str) {
        self.entries.lock().expect("cache lock").remove(key);
    }

    /// Entries held and the bytes they count for (expired ones not yet dropped included).
    pub fn size(&self) -> (usize, usize) {
        let entries = self.entries.lock().expect("cache lock");
        (entries.map.len(), entries.bytes)
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_its_bounds_evicting_the_soonest_to_expire_first() {
        let cache = MemoryCache::with_bounds(MemoryBounds {
            max_entries: 100,
            max_bytes: 100 * (ENTRY_OVERHEAD + 64),
        });
        cache.set("kept", "forever", None);
        cache.set("long", "a day", Some(Duration::from_secs(86_400)));
        for i in 0..10_000 {
            cache.hit(&format!("rate:logins:{i}"), Duration::from_secs(10));
        }
        let (held, bytes) = cache.size();
        assert!(held <= 100, "{held} entries");
        assert!(bytes <= 100 * (ENTRY_OVERHEAD + 64), "{bytes} bytes");
        assert_eq!(cache.get("kept").as_deref(), Some("forever"));
        assert_eq!(cache.get("long").as_deref(), Some("a day"));

        let big = "x".repeat(60_000);
        for i in 0..50 {
            cache.set(&format!("big:{i}"), &big, Some(Duration::from_secs(5)));
        }
        let (_, bytes) = cache.size();
        assert!(bytes <= 100 * (ENTRY_OVERHEAD + 64), "{bytes} bytes");
    }

    #[test]
    fn expired_entries_go_as_later_writes_come_without_a_full_map() {
        let cache = MemoryCache::new();
        for i in 0..1_000 {
            cache.hit(&format!("short:{i}"), Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        cache.set("next", "1", None);
        assert_eq!(cache.size().0, 1, "the expired windows were dropped");
    }

    #[test]
    fn a_forgiven_hit_is_not_counted() {
        let cache = MemoryCache::new();
        cache.hit("k", Duration::from_secs(10));
        cache.hit("k", Duration::from_secs(10));
        cache.forgive("k");
        assert_eq!(cache.hit("k", Duration::from_secs(10)).0, 2);
        for _ in 0..8 {
            cache.hit("k", Duration::from_secs(10));
        }
        cache.forgive("k");
        let nine = MemoryCache::new();
        nine.set("k", "9", None);
        assert_eq!(cache.size(), nine.size(), "10 → 9 counts one byte less");
        cache.delete("k");
        assert_eq!(cache.size(), (0, 0), "nothing is left counted");
        cache.forgive("absent");
        assert_eq!(cache.get("absent"), None);
    }
}
