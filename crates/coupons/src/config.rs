//! The `[coupon]` section of the configuration: first-come issuance's time bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::IssueSettings;

/// `[coupon]`: how long issuance waits for the bus, and when the reconciler steps in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CouponConfig {
    /// How long an issue request waits for a bus that completes nothing before it is withdrawn
    /// and answered 503 `UNAVAILABLE`, in milliseconds (a busy bus is waited for longer).
    pub publish_timeout_ms: u64,
    /// An admitted issue request whose event is still not on the bus this long after (its
    /// process died) is withdrawn and its task failed, in milliseconds; more than
    /// `publish_timeout_ms`.
    pub reconcile_after_ms: u64,
    /// A live coupon whose gate counts fewer units than the database (a write the cache lost
    /// in a failover) is raised to the database's count once no unit was taken this long, in
    /// milliseconds.
    pub restock_after_ms: u64,
}

impl Default for CouponConfig {
    fn default() -> Self {
        let defaults = IssueSettings::default();
        Self {
            publish_timeout_ms: defaults.publish_timeout.as_millis() as u64,
            reconcile_after_ms: defaults.reconcile_after.as_millis() as u64,
            restock_after_ms: defaults.restock_after.as_millis() as u64,
        }
    }
}

impl CouponConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            (
                "publish_timeout_ms",
                self.publish_timeout_ms.into(),
                1,
                60_000,
            ),
            (
                "reconcile_after_ms",
                self.reconcile_after_ms.into(),
                2,
                3_600_000,
            ),
            (
                "restock_after_ms",
                self.restock_after_ms.into(),
                1_000,
                3_600_000,
            ),
        ]
    }

    /// The settings; fails unless the reconciler waits longer than a publish (it would
    /// withdraw a request still publishing).
    pub fn settings(&self) -> anyhow::Result<IssueSettings> {
        anyhow::ensure!(
            self.reconcile_after_ms > self.publish_timeout_ms,
            "reconcile_after_ms ({}) must be more than publish_timeout_ms ({}): a request still \
             publishing would be withdrawn",
            self.reconcile_after_ms,
            self.publish_timeout_ms
        );
        Ok(IssueSettings {
            publish_timeout: Duration::from_millis(self.publish_timeout_ms),
            reconcile_after: Duration::from_millis(self.reconcile_after_ms),
            restock_after: Duration::from_millis(self.restock_after_ms),
        })
    }
}
