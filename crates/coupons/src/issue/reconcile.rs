//! The reconciler: a request the gate admitted whose `coupon-issued` never reached the bus (its
//! process died in between, or could not withdraw it) is withdrawn once it is
//! `reconcile_after` old: its unit reopens, its user may ask again, and its task fails
//! `INTERNAL`. Every instance may run it: a withdrawal is one atomic step, and a second one
//! changes nothing.

use std::time::Duration;

use chrono::Utc;
use db::{on_db, sqlx};
use events::Envelope;
use metrics::counter;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{CouponIssueFailed, FailReason};
use crate::{
    gate::{PendingTask, Withdrawal, KEEP_AFTER_EXPIRY_MS},
    Coupons,
};

/// Requests one pass handles; the next pass takes the rest.
const BATCH: usize = 500;

/// Reconciles every quarter of `reconcile_after` (at most every 5 s) until `stop`, and reopens
/// the units a gate lost count of ([`super::restock`]) every half of `restock_after` (it waits
/// for a sale quiet that long anyway).
pub async fn run(coupons: Coupons, stop: CancellationToken) {
    let every = (coupons.settings.reconcile_after / 4).min(Duration::from_secs(5));
    let quiet = coupons.settings.restock_after;
    let mut restock_at = tokio::time::Instant::now() + quiet / 2;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        if let Err(error) = reconcile(&coupons).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "reconciling coupon requests failed"
            );
        }
        if tokio::time::Instant::now() < restock_at {
            continue;
        }
        restock_at += quiet / 2;
        if let Err(error) = super::restock::restock_lost_units(&coupons, quiet).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "comparing coupon gates with the database failed"
            );
        }
    }
}

/// Withdraws the requests admitted more than `reconcile_after` ago and still not on the bus;
/// returns how many it withdrew.
pub async fn reconcile(coupons: &Coupons) -> anyhow::Result<usize> {
    let now = Utc::now();
    let before = now - coupons.settings.reconcile_after;
    // The gate keeps a coupon's requests until a while after it expires: those coupons may
    // have some (a request is admitted only before the coupon expires).
    let kept_since = now - chrono::Duration::milliseconds(KEEP_AFTER_EXPIRY_MS);
    let candidates: Vec<i64> = on_db!(&coupons.db, c => sqlx::query_scalar(
        "SELECT id FROM coupons WHERE expires_at > $1 ORDER BY id",
    )
    .bind(kept_since)
    .fetch_all(c)
    .await)?;
    let stale = coupons
        .gate
        .unpublished(&candidates, before.timestamp_millis(), BATCH)
        .await?;
    let mut withdrawn = 0;
    for (task, pending) in stale {
        if withdraw(coupons, task, pending).await? {
            withdrawn += 1;
        }
    }
    Ok(withdrawn)
}

/// Withdraws one request and stores its failure (through `coupon-issue-failed`, as the stock
/// consumer would); `false` when its unit had been taken after all (it did reach the bus).
/// The request stays unpublished until its failure is committed, so a failed commit is
/// retried by the next pass.
async fn withdraw(coupons: &Coupons, task: Uuid, pending: PendingTask) -> anyhow::Result<bool> {
    let withdrawn = coupons
        .gate
        .undo(task, pending, Withdrawal::Abandoned)
        .await?;
    if withdrawn {
        let failed = CouponIssueFailed {
            task_id: task,
            coupon_id: pending.coupon_id,
            user_id: pending.user_id,
            reason: FailReason::Internal,
        };
        let mut tx = coupons.db.begin().await?;
        coupons
            .bus
            .outbox()
            .append(&mut tx, &[Envelope::new(&failed)])
            .await?;
        tx.commit().await?;
        tracing::warn!(
            task_id = %task,
            coupon_id = pending.coupon_id,
            user_id = pending.user_id,
            "withdrew a coupon request that never reached the bus"
        );
        counter!("stampede_coupon_requests_withdrawn_total").increment(1);
    }
    coupons.gate.settle(task, pending).await?;
    Ok(withdrawn)
}
