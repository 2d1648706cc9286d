//! First-come issuance: the request ([`request`]), the stock consumer ([`take_stock`]), the
//! store consumer ([`store`]), the task a client follows ([`task`]) and the reconciler that
//! withdraws requests their process left half done ([`reconcile`]).

mod follow;
pub mod reconcile;
pub mod request;
pub mod restock;
pub mod store;
pub mod take_stock;
pub mod task;

use events::{topics, Event};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use follow::follow;
pub use request::OUTCOMES;
pub use request::{request, request_within};
pub(crate) use request::{Remembered, Tally};
pub use task::{find_task, task_channel, Task, TaskStatus};

/// Why an accepted task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailReason {
    SoldOut,
    AlreadyIssued,
    Expired,
    Internal,
}

impl FailReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailReason::SoldOut => "SOLD_OUT",
            FailReason::AlreadyIssued => "ALREADY_ISSUED",
            FailReason::Expired => "EXPIRED",
            FailReason::Internal => "INTERNAL",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "SOLD_OUT" => FailReason::SoldOut,
            "ALREADY_ISSUED" => FailReason::AlreadyIssued,
            "EXPIRED" => FailReason::Expired,
            _ => FailReason::Internal,
        }
    }
}

/// `coupon-issued`: a request passed the gate (key: coupon id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponIssued {
    pub task_id: Uuid,
    pub coupon_id: i64,
    pub user_id: i64,
}

impl Event for CouponIssued {
    const TYPE: &'static str = topics::COUPON_ISSUED;
    fn key(&self) -> String {
        self.coupon_id.to_string()
    }
}

/// `coupon-issued-success`: a unit of stock was taken for the task (key: coupon id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponIssuedSuccess {
    pub task_id: Uuid,
    pub coupon_id: i64,
    pub user_id: i64,
}

impl Event for CouponIssuedSuccess {
    const TYPE: &'static str = topics::COUPON_ISSUED_SUCCESS;
    fn key(&self) -> String {
        self.coupon_id.to_string()
    }
}

/// `coupon-issue-failed`: the task got no stock (key: coupon id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponIssueFailed {
    pub task_id: Uuid,
    pub coupon_id: i64,
    pub user_id: i64,
    pub reason: FailReason,
}

impl Event for CouponIssueFailed {
    const TYPE: &'static str = topics::COUPON_ISSUE_FAILED;
    fn key(&self) -> String {
        self.coupon_id.to_string()
    }
}
