//! A room's admission rate over time, and how many admissions are due by a moment: the rate
//! integrated over the time the room was open and not paused, rounded down. Every instance
//! computes the same number from the same history, so none admits on its own.

use chrono::{DateTime, Utc};

/// A room's rate history: from `opens_at`, each change of the rate or of `paused` holds until
/// the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    opens_at: DateTime<Utc>,
    changes: Vec<Change>,
}

/// From `at` on, admit `per_second` a second, or nobody while `paused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub at: DateTime<Utc>,
    pub per_second: u32,
    pub paused: bool,
}

impl Schedule {
    /// A room that opens at `opens_at` admitting `per_second`.
    pub fn new(opens_at: DateTime<Utc>, per_second: u32) -> Self {
        Self {
            opens_at,
            changes: vec![Change {
                at: opens_at,
                per_second,
                paused: false,
            }],
        }
    }

    /// The history as stored: the opening, then each change in order.
    pub fn from_changes(opens_at: DateTime<Utc>, changes: Vec<Change>) -> Self {
        let mut schedule = Self {
            opens_at,
            changes: Vec::with_capacity(changes.len()),
        };
        for change in changes {
            schedule.push(change);
        }
        schedule
    }

    /// Changes the rate and/or the pause from `at` on (a change before opening takes effect at
    /// opening; a change dated before the last one takes effect with it). Returns the change
    /// as recorded.
    pub fn change(
        &mut self,
        at: DateTime<Utc>,
        per_second: Option<u32>,
        paused: Option<bool>,
    ) -> Change {
        let last = self.current();
        let change = Change {
            at,
            per_second: per_second.unwrap_or(last.per_second),
            paused: paused.unwrap_or(last.paused),
        };
        self.push(change);
        *self.changes.last().expect("a schedule has its opening")
    }

    fn push(&mut self, mut change: Change) {
        change.at = change.at.max(self.opens_at);
        if let Some(last) = self.changes.last() {
            change.at = change.at.max(last.at);
        }
        match self.changes.last_mut() {
            Some(last) if last.at == change.at => *last = change,
            _ => self.changes.push(change),
        }
    }

    /// The change in force last.
    pub fn current(&self) -> Change {
        *self.changes.last().expect("a schedule has its opening")
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub fn opens_at(&self) -> DateTime<Utc> {
        self.opens_at
    }

    /// The rate at `at`: 0 before opening and while paused.
    pub fn rate_at(&self, at: DateTime<Utc>) -> u32 {
        self.changes
            .iter()
            .rev()
            .find(|change| change.at <= at)
            .filter(|change| !change.paused)
            .map_or(0, |change| change.per_second)
    }

    /// Admissions due from opening until `at`: each segment's rate times its open time, in
    /// milliseconds, summed before rounding down (so that no rounding is lost at changes).
    pub fn due(&self, at: DateTime<Utc>) -> u64 {
        let mut thousandths: u128 = 0;
        for (i, change) in self.changes.iter().enumerate() {
            if change.paused || change.at >= at {
                continue;
            }
            let end = self.changes.get(i + 1).map_or(at, |next| next.at.min(at));
            let millis = (end - change.at).num_milliseconds().max(0) as u128;
            thousandths += millis * u128::from(change.per_second);
        }
        (thousandths / 1000) as u64
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-12-04T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn nothing_is_due_before_opening_and_the_rate_accrues_after() {
        let schedule = Schedule::new(t0(), 50);
        assert_eq!(schedule.due(t0() - Duration::seconds(5)), 0);
        assert_eq!(schedule.due(t0()), 0);
        assert_eq!(schedule.due(t0() + Duration::milliseconds(19)), 0);
        assert_eq!(schedule.due(t0() + Duration::milliseconds(20)), 1);
        assert_eq!(schedule.due(t0() + Duration::seconds(10)), 500);
        assert_eq!(schedule.rate_at(t0() - Duration::seconds(1)), 0);
        assert_eq!(schedule.rate_at(t0()), 50);
    }

    #[test]
    fn a_pause_admits_nobody_and_a_new_rate_counts_from_its_change() {
        let mut schedule = Schedule::new(t0(), 100);
        schedule.change(t0() + Duration::seconds(10), None, Some(true));
        schedule.change(t0() + Duration::seconds(20), Some(5_000), Some(false));
        assert_eq!(schedule.due(t0() + Duration::seconds(10)), 1_000);
        assert_eq!(schedule.due(t0() + Duration::seconds(19)), 1_000);
        assert_eq!(schedule.due(t0() + Duration::seconds(21)), 6_000);
        assert_eq!(schedule.rate_at(t0() + Duration::seconds(15)), 0);
        // Stored and read back, the history gives the same answers.
        let again = Schedule::from_changes(t0(), schedule.changes().to_vec());
        assert_eq!(again.due(t0() + Duration::seconds(21)), 6_000);
    }

    #[test]
    fn a_change_before_opening_starts_at_opening_and_a_late_one_never_rewrites_the_past() {
        let mut schedule = Schedule::new(t0(), 10);
        let before = schedule.change(t0() - Duration::minutes(5), Some(20), None);
        assert_eq!(before.at, t0());
        assert_eq!(schedule.changes().len(), 1, "it replaces the opening rate");
        schedule.change(t0() + Duration::seconds(10), Some(40), None);
        let stale = schedule.change(t0() + Duration::seconds(5), None, Some(true));
        assert_eq!(stale.at, t0() + Duration::seconds(10));
        assert_eq!(schedule.due(t0() + Duration::seconds(10)), 200);
    }

    #[test]
    fn the_rate_holds_within_five_percent_over_every_ten_seconds_at_any_rate() {
        for rate in [1, 50, 500, 5_000, 100_000] {
            let schedule = Schedule::new(t0(), rate);
            for start_ms in (0..60_000).step_by(7_919) {
                let from = t0() + Duration::milliseconds(start_ms);
                let to = from + Duration::seconds(10);
                let admitted = (schedule.due(to) - schedule.due(from)) as f64;
                let expected = f64::from(rate) * 10.0;
                assert!(
                    (admitted - expected).abs() <= expected * 0.05 + 1.0,
                    "{rate}/s from {start_ms} ms: {admitted}"
                );
            }
        }
    }
}
