//! The coupons users hold: listing them, and using and restoring one for an order (the order
//! saga calls these from its event handlers).

mod list;
mod restore_for_order;
pub mod saga;
mod use_for_order;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::DiscountType;

pub use list::list;
pub use restore_for_order::restore_for_order;
pub use use_for_order::use_for_order;

/// A user coupon's state as clients see it; `EXPIRED` is an `AVAILABLE` coupon past its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum UserCouponStatus {
    Available,
    Used,
    Expired,
}

/// A coupon a user holds.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserCoupon {
    pub user_coupon_id: i64,
    pub coupon_id: i64,
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub status: UserCouponStatus,
    pub issued_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

/// What a used coupon takes off an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discount {
    pub discount_type: DiscountType,
    pub discount_value: i64,
}

/// Why a coupon could not be used for an order.
#[derive(Debug, thiserror::Error)]
pub enum CouponUseError {
    #[error("no such user coupon")]
    NotFound,
    #[error("the coupon belongs to another user")]
    NotOwned,
    #[error("the coupon is already used")]
    AlreadyUsed,
    #[error("the coupon has expired")]
    Expired,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<sqlx::Error> for CouponUseError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unknown(e.into())
    }
}
