//! One room's line as a process holds it: the embedded deployment's line, and the reference
//! the Redis scripts are held to. Places are numbered in line order once the room opens (those
//! taken before, in the seed's order; later ones as they come); admissions go to the first
//! waiting places, never out of order; a place's position is the number of waiting places up
//! to it, kept in a Fenwick tree so that it costs `O(log n)` however long the line.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use crate::order::Seed;

/// Where a place stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlaceStatus {
    /// In line.
    Waiting,
    /// Let in: its guarded request may go through until its admission expires.
    Admitted,
    /// Its admission was spent by an accepted guarded request.
    Used,
    /// Let in, but not used in time.
    Expired,
    /// Left the line (or dropped from it as abandoned).
    Left,
    /// Still waiting when the room closed.
    Closed,
}

impl PlaceStatus {
    /// The status as the API and the Redis line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Admitted => "ADMITTED",
            Self::Used => "USED",
            Self::Expired => "EXPIRED",
            Self::Left => "LEFT",
            Self::Closed => "CLOSED",
        }
    }

    /// Whether a user holding a place in this status keeps it when joining again (one purchase
    /// per person through a room).
    pub fn holds(self) -> bool {
        matches!(self, Self::Waiting | Self::Admitted | Self::Used)
    }
}

/// What a guarded request finds when it asks to use its holder's admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The admission is reserved for this request until it is settled (or the lease runs out).
    Granted,
    /// No unspent, unexpired admission.
    Required,
    /// Another request of the same user holds the admission right now.
    InUse,
}

/// One place in line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub user_id: i64,
    /// The user's places in this room are counted from 1: joining again after leaving or
    /// expiring takes the next.
    pub generation: u32,
    /// Its number in line from 1; `None` until the room opens for a place taken before.
    pub number: Option<u64>,
    pub status: PlaceStatus,
    pub admitted_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// A guarded request holds the admission until then.
    claimed_until: Option<DateTime<Utc>>,
    /// When the place was taken.
    pub joined_at: DateTime<Utc>,
    /// Last seen (joined, read, or followed on a stream): a waiting place unseen for long is
    /// dropped as abandoned.
    seen_at: DateTime<Utc>,
    /// The user's place before this one.
    pub previous: Option<PlaceIndex>,
}

/// A place's handle in its [`Line`].
pub type PlaceIndex = usize;

/// A room's line.
pub struct Line {
    seed: Seed,
    open: bool,
    places: Vec<Place>,
    /// Each user's latest place.
    by_user: HashMap<i64, PlaceIndex>,
    /// `order[n - 1]` is the place numbered `n`.
    order: Vec<PlaceIndex>,
    /// 1 at each number whose place is waiting.
    waiting: Fenwick,
    /// Numbers before `order[front]` are not waiting.
    front: usize,
    /// Admissions due so far that were made, or forgiven (nobody waiting, or the cap reached).
    credited: u64,
    /// Admitted places by expiry.
    expiring: VecDeque<(DateTime<Utc>, PlaceIndex)>,
    /// Admissions not yet spent, expired or given up.
    active: u64,
    /// Places taken before opening and still waiting (not numbered yet).
    early: u64,
    closed: bool,
    /// Admissions made, waiting places dropped as abandoned, and waiting places their users
    /// took out of the line, since the line began.
    admitted_total: u64,
    dropped_total: u64,
    left_total: u64,
}

impl Line {
    /// An empty line, shuffled at opening by `seed`.
    pub fn new(seed: Seed) -> Self {
        Self {
            seed,
            open: false,
            places: Vec::new(),
            by_user: HashMap::new(),
            order: Vec::new(),
            waiting: Fenwick::default(),
            front: 0,
            credited: 0,
            expiring: VecDeque::new(),
            active: 0,
            early: 0,
            closed: false,
            admitted_total: 0,
            dropped_total: 0,
            left_total: 0,
        }
    }

    /// `user`'s place, taken at `now` unless they hold one that is waiting, admitted or used
    /// (one purchase per person through a room); whether it is new. `None` once the line is
    /// closed (for a user who holds no place).
    pub fn join(&mut self, user: i64, now: DateTime<Utc>) -> Option<(PlaceIndex, bool)> {
        let previous = self.by_user.get(&user).copied();
        if let Some(index) = previous {
            if self.places[index].status.holds() {
                self.places[index].seen_at = now;
                return Some((index, false));
            }
        }
        if self.closed {
            return None;
        }
        let index = self.places.len();
        self.places.push(Place {
            user_id: user,
            generation: previous.map_or(1, |i| self.places[i].generation + 1),
            number: None,
            status: PlaceStatus::Waiting,
            admitted_at: None,
            expires_at: None,
            claimed_until: None,
            joined_at: now,
            seen_at: now,
            previous,
        });
        self.by_user.insert(user, index);
        if self.open {
            self.number(index);
        } else {
            self.early += 1;
        }
        Some((index, true))
    }

    fn number(&mut self, index: PlaceIndex) {
        self.order.push(index);
        self.places[index].number = Some(self.order.len() as u64);
        self.waiting.push(1);
    }

    /// Opens the line: the places taken so far are numbered in the seed's order. Once only.
    pub fn open(&mut self) {
        if self.open {
            return;
        }
        self.open = true;
        self.early = 0;
        let mut early: Vec<i64> = self
            .places
            .iter()
            .filter(|place| place.status == PlaceStatus::Waiting)
            .map(|place| place.user_id)
            .collect();
        self.seed.shuffle(&mut early);
        for user in early {
            self.number(self.by_user[&user]);
        }
    }

    /// Admits the first waiting places now that `due` admissions are due in all (see
    /// [`Schedule::due`](crate::Schedule::due)), never more than `max_active` unspent at once;
    /// each admission lasts `lasts`. What could not be admitted (nobody waiting, the cap
    /// reached) is forgiven, not owed: a line that fills later, or a cap that frees, does not
    /// release a burst. Returns the places admitted, in order.
    pub fn admit(
        &mut self,
        due: u64,
        max_active: Option<u64>,
        now: DateTime<Utc>,
        lasts: Duration,
    ) -> Vec<PlaceIndex> {
        self.expire(now);
        if !self.open {
            return Vec::new();
        }
        let owed = due.saturating_sub(self.credited);
        let room = max_active.map_or(u64::MAX, |cap| cap.saturating_sub(self.active));
        let mut admitted = Vec::new();
        while (admitted.len() as u64) < owed.min(room) {
            let Some(index) = self.first_waiting() else {
                break;
            };
            let place = &mut self.places[index];
            place.status = PlaceStatus::Admitted;
            place.admitted_at = Some(now);
            place.expires_at = Some(now + lasts);
            self.waiting.clear(self.front);
            self.front += 1;
            self.active += 1;
            self.expiring.push_back((now + lasts, index));
            admitted.push(index);
        }
        self.admitted_total += admitted.len() as u64;
        self.credited = self.credited.max(due);
        admitted
    }

    fn first_waiting(&mut self) -> Option<PlaceIndex> {
        while let Some(&index) = self.order.get(self.front) {
            if self.places[index].status == PlaceStatus::Waiting {
                return Some(index);
            }
            self.front += 1;
        }
        None
    }

    /// Admitted places whose admission ran out by `now` become `Expired`; returns them.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<PlaceIndex> {
        let mut expired = Vec::new();
        while let Some(&(at, index)) = self.expiring.front() {
            if at > now {
                break;
            }
            self.expiring.pop_front();
            if self.places[index].status == PlaceStatus::Admitted {
                self.places[index].status = PlaceStatus::Expired;
                self.active -= 1;
                expired.push(index);
            }
        }
        expired
    }

    /// Reserves `user`'s admission for one guarded request until `now + lease` (a request
    /// that never settles frees it then).
    pub fn claim(&mut self, user: i64, now: DateTime<Utc>, lease: Duration) -> Claim {
        self.expire(now);
        let Some(&index) = self.by_user.get(&user) else {
            return Claim::Required;
        };
        let place = &mut self.places[index];
        if place.status != PlaceStatus::Admitted {
            return Claim::Required;
        }
        if place.claimed_until.is_some_and(|until| until > now) {
            return Claim::InUse;
        }
        place.claimed_until = Some(now + lease);
        Claim::Granted
    }

    /// Settles `user`'s claimed admission: spent (`Used`) when their request was accepted,
    /// free again when it was refused. An admission nobody claimed is left as it is.
    pub fn settle(&mut self, user: i64, accepted: bool) {
        let Some(&index) = self.by_user.get(&user) else {
            return;
        };
        let place = &mut self.places[index];
        if place.status != PlaceStatus::Admitted || place.claimed_until.is_none() {
            return;
        }
        place.claimed_until = None;
        if accepted {
            place.status = PlaceStatus::Used;
            self.active -= 1;
        }
    }

    /// `user`'s place was seen at `now` (read, or followed on a stream).
    pub fn touch(&mut self, user: i64, now: DateTime<Utc>) {
        if let Some(&index) = self.by_user.get(&user) {
            let place = &mut self.places[index];
            place.seen_at = place.seen_at.max(now);
        }
    }

    /// Waiting places not seen since `cutoff` leave the line; returns how many.
    pub fn abandon(&mut self, cutoff: DateTime<Utc>) -> u64 {
        let gone: Vec<i64> = self
            .places
            .iter()
            .filter(|place| place.status == PlaceStatus::Waiting && place.seen_at < cutoff)
            .map(|place| place.user_id)
            .collect();
        for &user in &gone {
            self.stop_waiting(user);
        }
        self.dropped_total += gone.len() as u64;
        gone.len() as u64
    }

    /// `user` leaves: a waiting place is skipped from now on, an unspent admission is given
    /// up. False when they held neither.
    pub fn leave(&mut self, user: i64) -> bool {
        let Some(&index) = self.by_user.get(&user) else {
            return false;
        };
        match self.places[index].status {
            PlaceStatus::Waiting => {
                self.stop_waiting(user);
                self.left_total += 1;
            }
            PlaceStatus::Admitted => {
                self.active -= 1;
                self.places[index].status = PlaceStatus::Left;
            }
            _ => return false,
        }
        true
    }

    /// `user`'s waiting place becomes `Left` and is skipped from now on.
    fn stop_waiting(&mut self, user: i64) {
        let index = self.by_user[&user];
        match self.places[index].number {
            Some(number) => self.waiting.clear(number as usize - 1),
            None => self.early -= 1,
        }
        self.places[index].status = PlaceStatus::Left;
    }

    /// Closes the line: nobody joins any more and every waiting place becomes `Closed`;
    /// returns them.
    pub fn close(&mut self) -> Vec<PlaceIndex> {
        self.closed = true;
        let mut closed = Vec::new();
        for (index, place) in self.places.iter_mut().enumerate() {
            if place.status == PlaceStatus::Waiting {
                place.status = PlaceStatus::Closed;
                match place.number {
                    Some(number) => self.waiting.clear(number as usize - 1),
                    None => self.early -= 1,
                }
                closed.push(index);
            }
        }
        closed
    }

    /// The place `index`.
    pub fn place(&self, index: PlaceIndex) -> &Place {
        &self.places[index]
    }

    /// `user`'s latest place.
    pub fn place_of(&self, user: i64) -> Option<PlaceIndex> {
        self.by_user.get(&user).copied()
    }

    /// A waiting place's position: the waiting places up to and including it. `None` for a
    /// place that is not waiting, or not numbered yet (taken before opening).
    pub fn position(&self, index: PlaceIndex) -> Option<u64> {
        let place = &self.places[index];
        if place.status != PlaceStatus::Waiting {
            return None;
        }
        Some(self.waiting.prefix(place.number? as usize))
    }

    /// Places waiting (numbered or not).
    pub fn waiting(&self) -> u64 {
        self.waiting.prefix(self.order.len()) + self.early
    }

    /// Admissions unspent, unexpired and not given up.
    pub fn active(&self) -> u64 {
        self.active
    }

    /// Admissions made since the line began.
    pub fn admitted_total(&self) -> u64 {
        self.admitted_total
    }

    /// Waiting places dropped as abandoned since the line began.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Waiting places their users took out of the line since it began.
    pub fn left_total(&self) -> u64 {
        self.left_total
    }
}

/// A Fenwick (binary indexed) tree of 0/1 flags that grows at the end. The line knows which
/// places are waiting (their status), so the tree keeps only the sums.
#[derive(Default)]
struct Fenwick {
    /// 1-based: `tree[i - 1]` sums the `i & -i` flags ending at `i`.
    tree: Vec<u64>,
}

impl Fenwick {
    fn push(&mut self, value: u64) {
        let i = self.tree.len() + 1;
        let low = i & i.wrapping_neg();
        // The sum of (i - low, i - 1] is prefix(i - 1) - prefix(i - low).
        let below = self.prefix(i - 1) - self.prefix(i - low);
        self.tree.push(below + value);
    }

    /// Clears the flag at position `at` (0-based), which the caller knows is set.
    fn clear(&mut self, at: usize) {
        let mut i = at + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] -= 1;
            i += i & i.wrapping_neg();
        }
    }

    /// The sum of the first `n` values.
    fn prefix(&self, n: usize) -> u64 {
        let (mut i, mut sum) = (n, 0);
        while i > 0 {
            sum += self.tree[i - 1];
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-04T10:00:00Z".parse().unwrap()
    }

    fn lasts() -> Duration {
        Duration::seconds(300)
    }

    #[test]
    fn joining_again_returns_the_same_place_until_it_is_left_or_expired() {
        let mut line = Line::new(Seed([1; 32]));
        line.open();
        let (first, new) = line.join(7, now()).unwrap();
        assert!(new);
        assert_eq!(line.join(7, now()).unwrap(), (first, false));
        line.admit(1, None, now(), lasts());
        assert_eq!(
            line.join(7, now()).unwrap(),
            (first, false),
            "admitted keeps the place"
        );
        assert_eq!(line.claim(7, now(), lasts()), Claim::Granted);
        assert_eq!(line.claim(7, now(), lasts()), Claim::InUse);
        line.settle(7, true);
        assert_eq!(
            line.join(7, now()).unwrap(),
            (first, false),
            "one purchase per person"
        );
        let (other, _) = line.join(8, now()).unwrap();
        assert!(line.leave(8));
        let (again, new) = line.join(8, now()).unwrap();
        assert!(
            new && again != other,
            "a left place gives a new one at the back"
        );
        assert_eq!(line.place(again).number, Some(3));
    }

    #[test]
    fn early_places_are_numbered_in_the_seed_order_and_admitted_strictly_in_order() {
        let seed = Seed([9; 32]);
        let mut line = Line::new(seed);
        for user in 1..=100 {
            line.join(user, now()).unwrap();
        }
        assert_eq!(line.position(line.place_of(1).unwrap()), None);
        line.open();
        let late = line.join(1_000, now()).unwrap().0;
        let mut expected: Vec<i64> = (1..=100).collect();
        seed.shuffle(&mut expected);
        expected.push(1_000);
        let mut admitted = Vec::new();
        for due in [10, 40, 101] {
            admitted.extend(line.admit(due, None, now(), lasts()));
        }
        let users: Vec<i64> = admitted.iter().map(|&i| line.place(i).user_id).collect();
        assert_eq!(users, expected);
        assert_eq!(line.place(late).status, PlaceStatus::Admitted);
        assert_eq!(line.place(late).number, Some(101));
    }

    #[test]
    fn positions_count_the_waiting_places_ahead_and_skip_those_who_left() {
        let mut line = Line::new(Seed([2; 32]));
        line.open();
        let places: Vec<PlaceIndex> = (1..=10)
            .map(|user| line.join(user, now()).unwrap().0)
            .collect();
        assert_eq!(line.position(places[9]), Some(10));
        line.leave(3);
        line.leave(5);
        assert_eq!(line.position(places[9]), Some(8));
        line.admit(2, None, now(), lasts());
        assert_eq!(line.position(places[9]), Some(6));
        assert_eq!(line.position(places[0]), None, "admitted");
        // The two left places are skipped: the next admissions go to 4 and 6.
        let next = line.admit(4, None, now(), lasts());
        let users: Vec<i64> = next.iter().map(|&i| line.place(i).user_id).collect();
        assert_eq!(users, [4, 6]);
        assert_eq!(line.waiting(), 4);
    }

    #[test]
    fn the_cap_holds_admissions_and_what_it_held_back_is_forgiven_not_owed() {
        let mut line = Line::new(Seed([3; 32]));
        line.open();
        for user in 1..=100 {
            line.join(user, now()).unwrap();
        }
        assert_eq!(line.admit(10, Some(3), now(), lasts()).len(), 3);
        assert_eq!(line.active(), 3);
        for user in [1, 2] {
            assert_eq!(line.claim(user, now(), lasts()), Claim::Granted);
            line.settle(user, true);
        }
        // 10 more due, room for 2 more (3 - 1 unspent): 2, the other 8 forgiven.
        assert_eq!(line.admit(20, Some(3), now(), lasts()).len(), 2);
        assert_eq!(line.admit(21, None, now(), lasts()).len(), 1);
    }

    #[test]
    fn nothing_is_owed_for_the_time_nobody_waited() {
        let mut line = Line::new(Seed([4; 32]));
        line.open();
        assert!(line.admit(1_000, None, now(), lasts()).is_empty());
        for user in 1..=50 {
            line.join(user, now()).unwrap();
        }
        assert_eq!(line.admit(1_005, None, now(), lasts()).len(), 5);
    }

    #[test]
    fn an_unspent_admission_expires_and_a_closed_room_closes_every_waiting_place() {
        let mut line = Line::new(Seed([5; 32]));
        for user in 1..=4 {
            line.join(user, now()).unwrap();
        }
        line.leave(4);
        assert_eq!(line.waiting(), 3);
        line.open();
        let first = line.admit(1, None, now(), lasts())[0];
        let user = line.place(first).user_id;
        assert_eq!(line.claim(user, now(), lasts()), Claim::Granted);
        line.settle(user, false);
        assert_eq!(
            line.place(first).status,
            PlaceStatus::Admitted,
            "kept by a refusal"
        );
        let later = now() + lasts();
        assert_eq!(line.expire(later), vec![first]);
        assert_eq!(line.claim(user, later, lasts()), Claim::Required, "expired");
        assert_eq!(line.active(), 0);
        assert_eq!(line.close().len(), 2);
        assert_eq!(line.waiting(), 0);
        assert_eq!(line.join(99, now()), None, "nobody joins a closed line");
    }

    #[test]
    fn a_waiting_place_unseen_since_the_cutoff_is_dropped_and_skipped() {
        let mut line = Line::new(Seed([8; 32]));
        line.open();
        for user in 1..=3 {
            line.join(user, now()).unwrap();
        }
        let later = now() + Duration::seconds(60);
        line.touch(2, later);
        assert_eq!(line.abandon(later), 2);
        assert_eq!(line.dropped_total(), 2);
        let admitted = line.admit(1, None, later, lasts());
        assert_eq!(line.place(admitted[0]).user_id, 2);
        let (again, new) = line.join(1, later).unwrap();
        assert!(new);
        assert_eq!(line.place(again).generation, 2);
    }

    #[test]
    fn positions_agree_with_a_count_over_a_long_line() {
        let mut line = Line::new(Seed([6; 32]));
        line.open();
        let places: Vec<PlaceIndex> = (0..5_000)
            .map(|user| line.join(user, now()).unwrap().0)
            .collect();
        for user in (0..5_000).step_by(7) {
            line.leave(user);
        }
        line.admit(1_234, None, now(), lasts());
        for &index in places.iter().step_by(97) {
            let counted = places
                .iter()
                .filter(|&&i| {
                    line.place(i).status == PlaceStatus::Waiting
                        && line.place(i).number <= line.place(index).number
                })
                .count() as u64;
            let expected = (line.place(index).status == PlaceStatus::Waiting).then_some(counted);
            assert_eq!(line.position(index), expected);
        }
    }
}
