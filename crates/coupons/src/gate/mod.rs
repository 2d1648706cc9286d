//! The issuance gate: coupon state kept in the cache so that the issue path and the stock
//! consumer each need one atomic round trip and no SQL.
//!
//! Per coupon the gate holds its expiry, its remaining stock, how many more requests it may
//! admit (`open`: one per unit, so the gate answers `SOLD_OUT` as soon as every unit has a
//! request on its way, without waiting for the stock consumer), the users who asked for it,
//! and the stock outcome of every task (so a redelivered task never takes a second unit). Redis
//! runs each operation as one Lua script ([`redis`](self::redis)); the embedded default runs
//! the same logic under a lock ([`memory`](self::memory)). When a coupon's state is missing
//! (a new process, Redis restarted or flushed) the caller gets `Unknown` and [`rebuild`]s it
//! from the database before going on.
//!
//! An admitted request stays *unpublished* until its `coupon-issued` is on the bus
//! ([`Gate::settle`]) or it is withdrawn ([`Gate::undo`]). While an unpublished request holds a
//! unit the gate answers [`Admission::Held`] rather than `SOLD_OUT`: that unit may yet reopen.
//! A request whose process died between the two steps is found by
//! [`Gate::unpublished`] and withdrawn by the [`reconciler`](crate::issue::reconcile).
//!
//! On Redis every key of one coupon carries the hash tag `{c:ID}`, so each script runs on the
//! one Redis Cluster node that owns the coupon; nothing indexes all coupons at once.
//!
//! The gate is a fast filter, not the truth: after a rebuild it may admit more than the
//! database will issue, never fewer, and the store consumer's guarded `UPDATE` decides.

mod memory;
mod rebuild;
mod redis;

use cache::Cache;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use rebuild::rebuild;

/// The gate's answer to an issue request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    AlreadyRequested,
    SoldOut,
    Expired,
    /// No unit is open, but some are held by requests not yet on the bus, which may still be
    /// withdrawn: ask again shortly.
    Held,
    /// The coupon's state is not in the cache: rebuild it, then ask again.
    Unknown,
}

/// Who learns that a request was withdrawn, and so what the gate keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// Its requester is answered with an error and never learns the task: the gate forgets it.
    Refused,
    /// Its requester may hold the task id (its process died, or a 202 went out): the task stays
    /// pending, and unpublished, until its failure is stored and the caller
    /// [`settles`](Gate::settle) it.
    Abandoned,
}

/// The stock consumer's outcome for one task; the same for every delivery of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Taken,
    SoldOut,
    /// The request was withdrawn ([`Gate::undo`]) before its unit could be taken: it takes none.
    Withdrawn,
    /// The coupon's state is not in the cache: rebuild it, then ask again.
    Unknown,
}

/// An accepted task that has no result yet, as the gate keeps it for status reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingTask {
    pub coupon_id: i64,
    pub user_id: i64,
}

/// A coupon's gate state: a new coupon's, or one rebuilt from the database.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub coupon_id: i64,
    pub expires_at_ms: i64,
    pub stock: i64,
    /// Users who already asked (they get `AlreadyRequested`).
    pub users: Vec<i64>,
    /// When the cache may forget the coupon (well after it expired).
    pub keep_until_ms: i64,
}

/// How long after its expiry the cache keeps a coupon (so late requests get `EXPIRED` without
/// a database read).
pub(crate) const KEEP_AFTER_EXPIRY_MS: i64 = 7 * 24 * 3600 * 1000;

impl Snapshot {
    /// The gate state of `coupon`, kept by the cache until well after it expires.
    pub fn of(coupon: i64, expires_at: DateTime<Utc>, stock: i64, users: Vec<i64>) -> Self {
        let expires_at_ms = expires_at.timestamp_millis();
        Snapshot {
            coupon_id: coupon,
            expires_at_ms,
            stock,
            keep_until_ms: (expires_at_ms + KEEP_AFTER_EXPIRY_MS)
                .max(Utc::now().timestamp_millis() + 24 * 3600 * 1000),
            users,
        }
    }
}

/// How long a pending task is remembered for status reads: far longer than any task stays
/// pending; its result is then in the database.
pub(crate) const PENDING_TTL_MS: i64 = 24 * 3600 * 1000;

/// The gate over Redis or this process's memory. Cheap to clone.
#[derive(Clone)]
pub enum Gate {
    Memory(memory::MemoryGate),
    Redis(cache::RedisCache),
}

impl Gate {
    pub fn new(cache: &Cache) -> Self {
        match cache {
            Cache::Memory(m) => Gate::Memory(memory::MemoryGate::new(m.clone())),
            Cache::Redis(r) => Gate::Redis(r.clone()),
        }
    }

    /// Admits `user` to `coupon` (at most once per user, at most one request per unit, only
    /// while the coupon is valid at `now_ms`), remembering `task` as pending; one atomic step.
    pub async fn admit(
        &self,
        task: Uuid,
        pending: PendingTask,
        now_ms: i64,
    ) -> anyhow::Result<Admission> {
        match self {
            Gate::Memory(m) => Ok(m.admit(task, pending, now_ms)),
            Gate::Redis(r) => redis::admit(r, task, pending, now_ms).await,
        }
    }

    /// Withdraws a request [`Self::admit`] let in, when it could not be published (or its
    /// publish was not confirmed in time): its unit is open again, the user may ask again, and
    /// a `coupon-issued` of it that still arrives takes nothing ([`Take::Withdrawn`]). Returns
    /// false, and changes nothing but settling it, when the task's unit was already taken: the
    /// request did go through. Withdrawing twice has the effect of once.
    pub async fn undo(
        &self,
        task: Uuid,
        pending: PendingTask,
        withdrawal: Withdrawal,
    ) -> anyhow::Result<bool> {
        match self {
            Gate::Memory(m) => Ok(m.undo(task, pending, withdrawal)),
            Gate::Redis(r) => redis::undo(r, task, pending, withdrawal).await,
        }
    }

    /// The request is no longer unpublished: its `coupon-issued` is on the bus, or its
    /// withdrawal's failure is stored.
    pub async fn settle(&self, task: Uuid, pending: PendingTask) -> anyhow::Result<()> {
        match self {
            Gate::Memory(m) => {
                m.settle(task, pending);
                Ok(())
            }
            Gate::Redis(r) => redis::settle(r, task, pending).await,
        }
    }

    /// Up to `limit` requests for `coupons` admitted before `before_ms` and still unpublished.
    /// The caller names the coupons (those whose gate state may still be kept): no index spans
    /// every coupon, so each coupon's state lives in one Redis Cluster slot.
    pub async fn unpublished(
        &self,
        coupons: &[i64],
        before_ms: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<(Uuid, PendingTask)>> {
        match self {
            Gate::Memory(m) => Ok(m.unpublished(coupons, before_ms, limit)),
            Gate::Redis(r) => redis::unpublished(r, coupons, before_ms, limit).await,
        }
    }

    /// Takes one unit of `coupon`'s stock for `task`, once: a repeated call returns the first
    /// call's outcome and takes nothing.
    pub async fn take(&self, coupon: i64, task: Uuid) -> anyhow::Result<Take> {
        match self {
            Gate::Memory(m) => Ok(m.take(coupon, task)),
            Gate::Redis(r) => redis::take(r, coupon, task).await,
        }
    }

    /// Gives `task`'s unit back to the gate when the database refused to issue it although the
    /// gate let it take one: the user already held the coupon (`ALREADY_ISSUED`, which only a
    /// gate rebuilt while the user's first request was in flight lets through). The unit opens
    /// again, so `SOLD_OUT` stays the truth. Only a unit the task took is given back, once;
    /// a gate without the coupon's state (to be rebuilt from the database) is left alone.
    pub async fn give_back(&self, coupon: i64, task: Uuid) -> anyhow::Result<()> {
        match self {
            Gate::Memory(m) => {
                m.give_back(coupon, task);
                Ok(())
            }
            Gate::Redis(r) => redis::give_back(r, coupon, task).await,
        }
    }

    /// Reopens the units of `coupon` the gate lost track of: once no unit was taken for
    /// `quiet` and no request is unpublished, raises its stock to `remaining`, what the
    /// database has left, and its open units as much (never above the stock); returns how
    /// many it reopened. The gate counts
    /// fewer than the database only after a write Redis lost in a failover (replication is
    /// asynchronous): a take replayed after its record was lost, a lost give-back.
    pub async fn restock(
        &self,
        coupon: i64,
        remaining: i64,
        quiet: std::time::Duration,
    ) -> anyhow::Result<i64> {
        match self {
            Gate::Memory(m) => Ok(m.restock(coupon, remaining, quiet)),
            Gate::Redis(r) => redis::restock(r, coupon, remaining, quiet).await,
        }
    }

    /// The pending record of `task`, if the gate still has it.
    pub async fn pending(&self, task: Uuid) -> anyhow::Result<Option<PendingTask>> {
        match self {
            Gate::Memory(m) => Ok(m.pending(task)),
            Gate::Redis(r) => redis::pending(r, task).await,
        }
    }

    /// Installs `snapshot` unless the coupon's state is already there (another instance or
    /// task got there first; theirs stays).
    pub async fn load(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        match self {
            Gate::Memory(m) => {
                m.load(snapshot);
                Ok(())
            }
            Gate::Redis(r) => redis::load(r, snapshot).await,
        }
    }
}

/// A coupon's keys share the hash tag `{c:ID}`, so a gate script touching several of them runs
/// on one Redis Cluster node.
fn coupon_key(coupon: i64) -> String {
    format!("coupon:{{c:{coupon}}}")
}

fn users_key(coupon: i64) -> String {
    format!("coupon:{{c:{coupon}}}:users")
}

fn takes_key(coupon: i64) -> String {
    format!("coupon:{{c:{coupon}}}:takes")
}

/// A coupon's unpublished requests: `task:user` scored by when it was admitted (ms).
fn unpublished_key(coupon: i64) -> String {
    format!("coupon:{{c:{coupon}}}:unpublished")
}

fn unpublished_member(task: Uuid, user: i64) -> String {
    format!("{task}:{user}")
}

/// A pending task's record (its coupon and user), found by the task id alone: a key of its
/// own, outside the coupon's slot, written beside the admission.
fn pending_key(task: Uuid) -> String {
    format!("coupon-task:{task}")
}
