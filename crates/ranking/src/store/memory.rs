//! The counts in this process's memory (embedded default): the Redis scripts' logic under a
//! lock. A new process starts unbuilt, so its first read rebuilds from the database.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use chrono::{DateTime, NaiveDate, Utc};

use super::Line;

#[derive(Default)]
struct Day {
    units: HashMap<i64, i64>,
    lines: HashSet<(i64, i64)>,
    expires: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Counts {
    built: bool,
    days: BTreeMap<NaiveDate, Day>,
}

#[derive(Clone, Default)]
pub(crate) struct MemoryStore {
    counts: Arc<Mutex<Counts>>,
}

impl MemoryStore {
    pub fn add(&self, day: NaiveDate, expires: DateTime<Utc>, lines: &[Line]) -> u64 {
        let mut counts = self.counts.lock().expect("ranking lock");
        let now = Utc::now();
        counts
            .days
            .retain(|_, d| d.expires.is_none_or(|at| at > now));
        let counted = counts.days.entry(day).or_default();
        counted.expires = Some(expires);
        let mut added = 0;
        for line in lines {
            if counted
                .lines
                .insert((line.order_id, line.product_option_id))
            {
                *counted.units.entry(line.product_id).or_default() += line.quantity;
                added += 1;
            }
        }
        added
    }

    pub fn totals(&self, days: &[NaiveDate]) -> Option<HashMap<i64, i64>> {
        let counts = self.counts.lock().expect("ranking lock");
        if !counts.built {
            return None;
        }
        let mut totals = HashMap::new();
        for day in days.iter().filter_map(|d| counts.days.get(d)) {
            for (product, units) in &day.units {
                *totals.entry(*product).or_default() += units;
            }
        }
        Some(totals)
    }

    pub fn mark_built(&self) {
        self.counts.lock().expect("ranking lock").built = true;
    }

    pub fn clear(&self) {
        *self.counts.lock().expect("ranking lock") = Counts::default();
    }
}
