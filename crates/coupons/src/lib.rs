//! The coupons context: coupon definitions, first-come issuance and the coupons users hold.
//!
//! Issuance follows `docs/design.md`, "First-come coupons". A request passes the [`gate`] (one atomic round trip to
//! the cache: one request per user per coupon, a fast `SOLD_OUT`), is published as
//! `coupon-issued` and answered 202 with a task id. The stock consumer
//! ([`issue::take_stock`]) takes a unit of the cached stock, once per task; the store consumer
//! ([`issue::store`]) writes the user coupon and the task's result and wakes the task's
//! listeners.
//!
//! The database is the truth: a conditional `UPDATE` on `issued_quantity` and a unique
//! `(coupon_id, user_id)` make over-issue and double issue impossible whatever the cache holds,
//! and the cache's state is rebuilt from the database whenever it is missing.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use cache::Cache;
use db::Db;
use eventbus::{EventBus, Handler};

mod config;
pub mod definition;
pub mod gate;
pub mod issue;
pub mod wallet;

#[cfg(test)]
mod tests;

pub use config::CouponConfig;
pub use definition::{Coupon, DiscountType, NewCoupon};
pub use issue::{FailReason, Task, TaskStatus};
pub use wallet::{CouponUseError, Discount, UserCoupon, UserCouponStatus};

/// Why a coupon operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("no such coupon")]
    NotFound,
    #[error("this user already asked for this coupon")]
    AlreadyRequested,
    #[error("the coupon is sold out")]
    SoldOut,
    #[error("the coupon has expired")]
    Expired,
    /// The request could not be handed to the bus; nothing was kept, the client may retry.
    #[error("the request could not be accepted right now")]
    Unavailable(#[source] anyhow::Error),
    /// No unit is open, but some are held by requests that may still fail: retry shortly.
    #[error("every unit left is held by a request that may still fail")]
    Held,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<sqlx::Error> for CouponError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unknown(e.into())
    }
}

/// The coupons context of one process: its database, gate and bus. Cheap to clone.
#[derive(Clone)]
pub struct Coupons {
    db: Db,
    cache: Cache,
    gate: gate::Gate,
    bus: EventBus,
    /// Refusals this process answers itself (see [`issue::request`]).
    remembered: Arc<Mutex<issue::Remembered>>,
    /// This process's issue requests by outcome.
    tally: Arc<issue::Tally>,
    settings: IssueSettings,
}

/// Time bounds of first-come issuance.
#[derive(Debug, Clone, Copy)]
pub struct IssueSettings {
    /// How long an issue request waits for a bus that completes nothing (down or stuck) before
    /// it is withdrawn and answered `Unavailable`; a bus that is busy but moving is waited for
    /// up to [`Self::publish_cap`].
    pub publish_timeout: Duration,
    /// How old an admitted request still not on the bus must be before the reconciler
    /// withdraws it (its process died); longer than `publish_timeout`.
    pub reconcile_after: Duration,
    /// How long no unit of a live coupon must have been taken before its gate is compared
    /// with the database ([`issue::restock`]): far longer than a take waits for its issue to
    /// be stored, so that units on their way are not counted twice.
    pub restock_after: Duration,
}

impl IssueSettings {
    /// The longest a request waits for a bus that is busy but moving: until the reconciler's
    /// turn less one publish timeout, so that the request withdraws itself before the
    /// reconciler could take it for the leftover of a dead process.
    pub fn publish_cap(&self) -> Duration {
        self.reconcile_after.saturating_sub(self.publish_timeout)
    }
}

impl Default for IssueSettings {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(2),
            reconcile_after: Duration::from_secs(10),
            restock_after: Duration::from_secs(30),
        }
    }
}

impl Coupons {
    /// The gate lives in `cache` (Redis, or this process's memory).
    pub fn new(db: Db, cache: Cache, bus: EventBus) -> Self {
        Self {
            gate: gate::Gate::new(&cache),
            db,
            cache,
            bus,
            remembered: Arc::default(),
            tally: Arc::default(),
            settings: IssueSettings::default(),
        }
    }

    pub fn with_settings(mut self, settings: IssueSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Issue requests this process has answered, by outcome ([`issue::OUTCOMES`]).
    pub fn request_outcomes(&self) -> Vec<(&'static str, u64)> {
        self.tally.counts()
    }

    /// The coupons' consumers: of the issuance flow (take a unit of stock, then store the
    /// result), and of the order saga (use an order's coupon, and restore it).
    pub fn handlers(&self) -> Vec<Arc<dyn Handler>> {
        vec![
            Arc::new(issue::take_stock::TakeStock::new(self.clone())),
            Arc::new(issue::store::StoreResult::new(self.clone())),
            Arc::new(wallet::saga::UseCoupon::new(self.clone())),
            Arc::new(wallet::saga::RestoreCoupon),
        ]
    }
}
