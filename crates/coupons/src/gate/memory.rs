//! The gate in this process's memory (embedded default): the Lua scripts' logic under a lock.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use cache::MemoryCache;
use uuid::Uuid;

use super::{pending_key, Admission, PendingTask, Snapshot, Take, PENDING_TTL_MS};

#[derive(Default)]
struct CouponState {
    expires_at_ms: i64,
    stock: i64,
    open: i64,
    users: HashSet<i64>,
    takes: HashMap<Uuid, Take>,
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
        if state.open <= 0 || state.stock <= 0 {
            return Admission::SoldOut;
        }
        state.open -= 1;
        state.users.insert(pending.user_id);
        let json = serde_json::to_string(&pending).expect("a pending task serializes");
        self.cache.set(
            &pending_key(task),
            &json,
            Some(Duration::from_millis(PENDING_TTL_MS as u64)),
        );
        Admission::Admitted
    }

    pub(super) fn undo(&self, task: Uuid, pending: PendingTask) -> bool {
        if let Some(state) = self
            .coupons
            .lock()
            .expect("gate lock")
            .get_mut(&pending.coupon_id)
        {
            if let Some(done) = state.takes.get(&task) {
                return *done == Take::Withdrawn;
            }
            state.takes.insert(task, Take::Withdrawn);
            if state.users.remove(&pending.user_id) {
                state.open += 1;
            }
        }
        self.cache.delete(&pending_key(task));
        true
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
            Take::Taken
        } else {
            Take::SoldOut
        };
        state.takes.insert(task, outcome);
        outcome
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
                takes: HashMap::new(),
            });
    }
}
