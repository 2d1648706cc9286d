//! Coupon definitions: what a coupon takes off, how many exist and until when.

mod create;
mod find;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a coupon's discount is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DiscountType {
    /// `discountValue` KRW off.
    Fixed,
    /// `discountValue` percent off, rounded down.
    Percent,
}

impl DiscountType {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountType::Fixed => "FIXED",
            DiscountType::Percent => "PERCENT",
        }
    }

    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "FIXED" => Ok(DiscountType::Fixed),
            "PERCENT" => Ok(DiscountType::Percent),
            other => anyhow::bail!("unknown discount type {other:?}"),
        }
    }
}

/// The same two kinds, as the order saga's events carry them.
impl From<DiscountType> for events::order::DiscountKind {
    fn from(kind: DiscountType) -> Self {
        match kind {
            DiscountType::Fixed => Self::Fixed,
            DiscountType::Percent => Self::Percent,
        }
    }
}

/// A coupon as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coupon {
    pub id: i64,
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub total_quantity: i64,
    /// Units not yet issued (stored user coupons count as issued).
    pub remaining_quantity: i64,
    pub expires_at: DateTime<Utc>,
}

/// What an admin asks for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewCoupon {
    /// 5 to 20 characters, not all blank.
    #[schema(
        min_length = 5,
        max_length = 20,
        pattern = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$"
    )]
    pub name: String,
    pub discount_type: DiscountType,
    /// KRW (`FIXED`, 1 to 1,000,000,000) or percent (`PERCENT`, 1 to 100).
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub discount_value: i64,
    /// 0 to 10,000,000.
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub total_quantity: i64,
    /// In the future.
    pub expires_at: DateTime<Utc>,
}

pub use create::create;
pub use find::{drops, find, CouponDrop};

pub(crate) use find::CouponRow;
