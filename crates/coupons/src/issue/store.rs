//! The store consumer: `coupon-issued-success` / `coupon-issue-failed` → the user coupon and the
//! task's result in the database, then a wake-up for the task's listeners.
//!
//! The database decides: a unit is issued only by `UPDATE … WHERE issued_quantity <
//! total_quantity`, and `UNIQUE (coupon_id, user_id)` refuses a second coupon for one user, so
//! neither a stale cache nor a redelivery can over-issue. A unit the gate let a task take and
//! the database refused as `ALREADY_ISSUED` goes back to the gate, so none is stranded.

use async_trait::async_trait;
use chrono::Utc;
use db::{exec, on_tx, sqlx, Tx};
use eventbus::Handler;
use events::{topics, Envelope};
use metrics::counter;
use uuid::Uuid;

use super::{task_channel, CouponIssueFailed, CouponIssuedSuccess, FailReason};
use crate::Coupons;

/// Consumer group `coupon-store`.
pub struct StoreResult {
    coupons: Coupons,
}

impl StoreResult {
    pub fn new(coupons: Coupons) -> Self {
        Self { coupons }
    }
}

/// A task's result, ready to store.
struct TaskResult {
    task_id: Uuid,
    coupon_id: i64,
    user_id: i64,
    outcome: Result<i64, FailReason>,
}

#[async_trait]
impl Handler for StoreResult {
    fn group(&self) -> &str {
        "coupon-store"
    }

    fn topics(&self) -> Vec<String> {
        vec![
            topics::COUPON_ISSUED_SUCCESS.to_owned(),
            topics::COUPON_ISSUE_FAILED.to_owned(),
        ]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let (task_id, coupon_id, user_id, failure) = match event.topic() {
            topics::COUPON_ISSUED_SUCCESS => {
                let e: CouponIssuedSuccess = event.decode()?;
                (e.task_id, e.coupon_id, e.user_id, None)
            }
            _ => {
                let e: CouponIssueFailed = event.decode()?;
                (e.task_id, e.coupon_id, e.user_id, Some(e.reason))
            }
        };
        if task_stored(tx, task_id).await? {
            return Ok(());
        }
        let outcome = match failure {
            Some(reason) => Err(reason),
            None => issue(tx, task_id, coupon_id, user_id).await?,
        };
        if outcome == Err(FailReason::AlreadyIssued) {
            // The gate let this task take a unit the database will not issue: open it again
            // (once per task, so a retry of this transaction gives back nothing more).
            self.coupons.gate.give_back(coupon_id, task_id).await?;
        }
        store(
            tx,
            &TaskResult {
                task_id,
                coupon_id,
                user_id,
                outcome,
            },
        )
        .await?;
        let cache = self.coupons.cache.clone();
        let (status, reason) = match outcome {
            Ok(_) => ("SUCCESS", ""),
            Err(reason) => ("FAILED", reason.as_str()),
        };
        tx.on_commit(async move {
            counter!("stampede_coupon_tasks_total", "status" => status, "reason" => reason)
                .increment(1);
            if let Err(error) = cache.publish(&task_channel(task_id), "").await {
                tracing::warn!(%task_id, error = format!("{error:#}"), "announcing a coupon result failed; listeners re-read it");
            }
        });
        Ok(())
    }
}

async fn task_stored(tx: &mut Tx, task_id: Uuid) -> sqlx::Result<bool> {
    let found: Option<i64> = on_tx!(tx, c => sqlx::query_scalar(
        "SELECT coupon_id FROM coupon_tasks WHERE task_id = $1",
    )
    .bind(task_id)
    .fetch_optional(c)
    .await)?;
    Ok(found.is_some())
}

/// Issues one unit of `coupon_id` to `user_id` if the database has one left and the user has
/// none: the user coupon's id, or why not.
async fn issue(
    tx: &mut Tx,
    task_id: Uuid,
    coupon_id: i64,
    user_id: i64,
) -> sqlx::Result<Result<i64, FailReason>> {
    let taken = exec!(
        tx,
        "UPDATE coupons SET issued_quantity = issued_quantity + 1 \
         WHERE id = $1 AND issued_quantity < total_quantity",
        coupon_id
    )?;
    if taken == 0 {
        return Ok(Err(FailReason::SoldOut));
    }
    let user_coupon: Option<i64> = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO user_coupons (coupon_id, user_id, task_id, issued_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (coupon_id, user_id) DO NOTHING RETURNING id",
    )
    .bind(coupon_id)
    .bind(user_id)
    .bind(task_id)
    .bind(Utc::now())
    .fetch_optional(c)
    .await)?;
    match user_coupon {
        Some(id) => Ok(Ok(id)),
        None => {
            exec!(
                tx,
                "UPDATE coupons SET issued_quantity = issued_quantity - 1 WHERE id = $1",
                coupon_id
            )?;
            Ok(Err(FailReason::AlreadyIssued))
        }
    }
}

async fn store(tx: &mut Tx, result: &TaskResult) -> sqlx::Result<()> {
    let (status, reason, user_coupon_id) = match result.outcome {
        Ok(id) => ("SUCCESS", None, Some(id)),
        Err(reason) => ("FAILED", Some(reason.as_str()), None),
    };
    exec!(
        tx,
        "INSERT INTO coupon_tasks (task_id, coupon_id, user_id, status, reason, user_coupon_id, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        result.task_id,
        result.coupon_id,
        result.user_id,
        status,
        reason,
        user_coupon_id,
        Utc::now()
    )?;
    Ok(())
}
