//! The gate in this process's memory (embedded default): the Lua scripts' logic under a lock.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use cache::MemoryCache;
use uuid::Uuid;

use super::{pending_key, Admission, PendingTask, Snapshot, Take, Withdrawal, PENDING_TTL_MS};

#[derive(Default)]
struct CouponState {
    expires_at_ms: i64,
    stock: i64,
    open: i64,
    users: HashSet<i64>,
    takes: HashMap<Uuid, Take>,
    /// Taken units the database refused, given back ([`MemoryGate::give_back`]).
    returned: HashSet<Uuid>,
    /// Unpublished requests: task → (user, admitted at, ms).
    unpublished: HashMap<Uuid, (i64, i64)>,
    /// When a unit was last taken (ms).
    last_take_ms: i64,
}

/// Coupon states by id, and pending tasks in the process cache. Cheap to clone.
#[derive(Clone)]
pub struct MemoryGate {
    coupons: Arc<Mutex<HashMap<i64, CouponState>>>,
    cache: MemoryCache,
}

impl MemoryGate {
    pub(super) fn new(cache: MemoryCache) -> Self {
        Self {
            coupons: Arc::default(),
            cache,
        }
    }

    pub(super) fn admit(&self, task: Uuid, pending: PendingTask, now_ms: i64) -> Admission {
        let mut coupons = self.coupons.lock().expect("gate lock");
        let Some(state) = coupons.get_mut(&pending.coupon_id) else {
            return Admission::Unknown;
        };
        if now_ms >= state.expires_at_ms {
            return Admission::Expired;
        }
        if state.users.contains(&pending.user_id) {
            return Admission::AlreadyRequested;
        }
        if state.stock <= 0 {
            return Admission::SoldOut;
        }
        if state.open <= 0 {
            if state.unpublished.is_empty() {
                return Admission::SoldOut;
            }
            return Admission::Held;
        }
        state.open -= 1;
        state.users.insert(pending.user_id);
        state.unpublished.insert(task, (pending.user_id, now_ms));
        let json = serde_json::to_string(&pending).expect("a pending task serializes");
        self.cache.set(
            &pending_key(task),
            &json,
            Some(Duration::from_millis(PENDING_TTL_MS as u64)),
        );
        Admission::Admitted
    }

    pub(super) fn undo(&self, task: Uuid, pending: PendingTask, withdrawal: Withdrawal) -> bool {
        if let Some(state) = self
            .coupons
            .lock()
            .expect("gate lock")
            .get_mut(&pending.coupon_id)
        {
            if let Some(done) = state.takes.get(&task) {
                if *done != Take::Withdrawn {
                    state.unpublished.remove(&task);
                }
                return *done == Take::Withdrawn;
            }
            state.takes.insert(task, Take::Withdrawn);
            if state.users.remove(&pending.user_id) {
                state.open += 1;
            }
            if withdrawal == Withdrawal::Refused {
                state.unpublished.remove(&task);
            }
        }
        if withdrawal == Withdrawal::Refused {
            self.cache.delete(&pending_key(task));
        }
        true
    }

    pub(super) fn settle(&self, task: Uuid, pending: PendingTask) {
        if let Some(state) = self
            .coupons
            .lock()
            .expect("gate lock")
            .get_mut(&pending.coupon_id)
        {
            state.unpublished.remove(&task);
        }
    }

    pub(super) fn unpublished(
        &self,
        coupons: &[i64],
        before_ms: i64,
        limit: usize,
    ) -> Vec<(Uuid, PendingTask)> {
        let states = self.coupons.lock().expect("gate lock");
        let found = coupons.iter().flat_map(|&coupon_id| {
            let state = states.get(&coupon_id);
            state
                .into_iter()
                .flat_map(|state| state.unpublished.iter())
                .filter(move |(_, &(_, admitted))| admitted < before_ms)
                .map(move |(&task, &(user_id, _))| (task, PendingTask { coupon_id, user_id }))
        });
        found.take(limit).collect()
    }

    pub(super) fn take(&self, coupon: i64, task: Uuid) -> Take {
        let mut coupons = self.coupons.lock().expect("gate lock");
        let Some(state) = coupons.get_mut(&coupon) else {
            return Take::Unknown;
        };
        if let Some(done) = state.takes.get(&task) {
            return *done;
        }
        let outcome = if state.stock > 0 {
            state.stock -= 1;
            state.last_take_ms = chrono::Utc::now().timestamp_millis();
            Take::Taken
        } else {
            Take::SoldOut
        };
        state.takes.insert(task, outcome);
        outcome
    }

    pub(super) fn give_back(&self, coupon: i64, task: Uuid) {
        let mut coupons = self.coupons.lock().expect("gate lock");
        let Some(state) = coupons.get_mut(&coupon) else {
            return;
        };
        if state.takes.get(&task) == Some(&Take::Taken) && state.returned.insert(task) {
            state.stock += 1;
            state.open += 1;
        }
    }

    pub(super) fn restock(&self, coupon: i64, remaining: i64, quiet: Duration) -> i64 {
        let mut coupons = self.coupons.lock().expect("gate lock");
        let Some(state) = coupons.get_mut(&coupon) else {
            return 0;
        };
        let since = chrono::Utc::now().timestamp_millis() - state.last_take_ms;
        let add = remaining - state.stock;
        if !state.unpublished.is_empty() || since < quiet.as_millis() as i64 || add <= 0 {
            return 0;
        }
        state.stock += add;
        state.open = (state.open + add).min(state.stock);
        add
    }

    pub(super) fn pending(&self, task: Uuid) -> Option<PendingTask> {
        let json = self.cache.get(&pending_key(task))?;
        serde_json::from_str(&json).ok()
    }

    pub(super) fn load(&self, snapshot: &Snapshot) {
        self.coupons
            .lock()
            .expect("gate lock")
            .entry(snapshot.coupon_id)
            .or_insert_with(|| CouponState {
                expires_at_ms: snapshot.expires_at_ms,
                stock: snapshot.stock,
                open: snapshot.stock,
                users: snapshot.users.iter().copied().collect(),
                ..CouponState::default()
            });
    }
}
