//! The task a client follows: pending in the gate, then its stored result.

use db::{on_db, sqlx};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::FailReason;
use crate::{CouponError, Coupons};

/// Where an issue request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStatus {
    Pending,
    Success,
    Failed,
}

/// An accepted issue request and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_id: Uuid,
    pub coupon_id: i64,
    pub user_id: i64,
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_coupon_id: Option<i64>,
}

impl Task {
    pub fn is_terminal(&self) -> bool {
        self.status != TaskStatus::Pending
    }
}

/// A `coupon_tasks` row.
#[derive(sqlx::FromRow)]
struct StoredTask {
    coupon_id: i64,
    user_id: i64,
    status: String,
    reason: Option<String>,
    user_coupon_id: Option<i64>,
}

/// The pub/sub channel on which the store consumer announces that `task` has a result.
/// Messages are wake-ups: listeners read the result with [`find_task`].
pub fn task_channel(task: Uuid) -> String {
    format!("coupon-task:{task}")
}

/// The task `id`: its stored result, or `Pending` while the gate still knows it as accepted;
/// `NotFound` otherwise.
pub async fn find_task(coupons: &Coupons, id: Uuid) -> Result<Task, CouponError> {
    let stored: Option<StoredTask> = on_db!(&coupons.db, c => sqlx::query_as(
        "SELECT coupon_id, user_id, status, reason, user_coupon_id FROM coupon_tasks WHERE task_id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await)?;
    if let Some(task) = stored {
        return Ok(Task {
            task_id: id,
            coupon_id: task.coupon_id,
            user_id: task.user_id,
            status: if task.status == "SUCCESS" {
                TaskStatus::Success
            } else {
                TaskStatus::Failed
            },
            reason: task.reason.as_deref().map(FailReason::parse),
            user_coupon_id: task.user_coupon_id,
        });
    }
    match coupons.gate.pending(id).await? {
        Some(pending) => Ok(Task {
            task_id: id,
            coupon_id: pending.coupon_id,
            user_id: pending.user_id,
            status: TaskStatus::Pending,
            reason: None,
            user_coupon_id: None,
        }),
        None => Err(CouponError::NotFound),
    }
}
