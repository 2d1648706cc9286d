//! The order saga's events (`docs/design.md`, "The order saga"). Every one is keyed by order id, except
//! `product-sold` (keyed by product id, for the ranking).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{topics, Event};

/// A line as ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_option_id: i64,
    pub quantity: i64,
}

/// A line with its stock reserved, and what pricing and display need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservedLine {
    pub product_option_id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub option_name: String,
    pub unit_price: i64,
    pub quantity: i64,
}

/// How a coupon discounts, on the wire `FIXED` or `PERCENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountKind {
    /// `discount_value` KRW off.
    Fixed,
    /// `discount_value` percent off, rounded down.
    Percent,
}

/// The coupon an order uses, as coupons tells orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponDiscount {
    pub discount_type: DiscountKind,
    pub discount_value: i64,
}

/// Why a saga step refused an order, on the wire in UPPER_SNAKE (`OUT_OF_STOCK`, …). Orders
/// stores it as the order's `failureReason`, except `Cancelled`, which only says the order was
/// closed before the step ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaFailure {
    /// A line could not be reserved.
    OutOfStock,
    /// The coupon is not the user's, already used, expired or unknown.
    CouponInvalid,
    /// The order was cancelled or expired before the step ran.
    Cancelled,
    /// The step met something it cannot handle (an option that vanished).
    Internal,
}

impl SagaFailure {
    /// The wire form, which is also the order's `failureReason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "OUT_OF_STOCK",
            Self::CouponInvalid => "COUPON_INVALID",
            Self::Cancelled => "CANCELLED",
            Self::Internal => "INTERNAL",
        }
    }
}

/// `order-created`: a `PENDING` order was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub order_id: i64,
    pub user_id: i64,
    pub items: Vec<OrderLine>,
    pub user_coupon_id: Option<i64>,
}

/// `stock-decreased`: catalog reserved every line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockDecreased {
    pub order_id: i64,
    pub user_id: i64,
    pub items: Vec<ReservedLine>,
    pub user_coupon_id: Option<i64>,
}

/// `stock-decrease-failed`: nothing was reserved (`OutOfStock`, `Cancelled` or `Internal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockDecreaseFailed {
    pub order_id: i64,
    pub reason: SagaFailure,
    pub product_option_id: Option<i64>,
}

/// `coupon-used`: the order's coupon is used (or it has none: `discount` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponUsed {
    pub order_id: i64,
    pub items: Vec<ReservedLine>,
    pub user_coupon_id: Option<i64>,
    pub discount: Option<CouponDiscount>,
}

/// `coupon-use-failed`: the coupon was refused (`CouponInvalid`), or the order was cancelled
/// meanwhile (`Cancelled`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponUseFailed {
    pub order_id: i64,
    pub reason: SagaFailure,
    pub detail: String,
}

/// `order-expired`: not paid before its deadline; release stock, restore the coupon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderExpired {
    pub order_id: i64,
}

/// `order-cancelled`: cancelled by its user; release stock, restore the coupon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: i64,
}

/// `order-paid`: points taken, the order is `PAID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaid {
    pub order_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub paid_at: DateTime<Utc>,
}

/// `product-sold`: units of a product in a paid order (one event per item). An order has at
/// most one item per option, so `(order_id, product_option_id)` names the sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductSold {
    pub order_id: i64,
    pub product_option_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub sold_at: DateTime<Utc>,
}

macro_rules! keyed_by_order {
    ($($event:ty => $topic:expr),* $(,)?) => {$(
        impl Event for $event {
            const TYPE: &'static str = $topic;
            fn key(&self) -> String {
                self.order_id.to_string()
            }
        }
    )*};
}

keyed_by_order!(
    OrderCreated => topics::ORDER_CREATED,
    StockDecreased => topics::STOCK_DECREASED,
    StockDecreaseFailed => topics::STOCK_DECREASE_FAILED,
    CouponUsed => topics::COUPON_USED,
    CouponUseFailed => topics::COUPON_USE_FAILED,
    OrderExpired => topics::ORDER_EXPIRED,
    OrderCancelled => topics::ORDER_CANCELLED,
    OrderPaid => topics::ORDER_PAID,
);

impl Event for ProductSold {
    const TYPE: &'static str = topics::PRODUCT_SOLD;
    fn key(&self) -> String {
        self.product_id.to_string()
    }
}

#[cfg(test)]
mod wire {
    use super::*;

    #[test]
    fn reasons_and_discount_kinds_keep_their_upper_snake_wire_form() {
        for reason in [
            SagaFailure::OutOfStock,
            SagaFailure::CouponInvalid,
            SagaFailure::Cancelled,
            SagaFailure::Internal,
        ] {
            let wire = serde_json::to_value(reason).unwrap();
            assert_eq!(wire, reason.as_str());
            assert_eq!(serde_json::from_value::<SagaFailure>(wire).unwrap(), reason);
        }
        assert_eq!(
            serde_json::to_value(DiscountKind::Percent).unwrap(),
            "PERCENT"
        );
        assert_eq!(serde_json::to_value(DiscountKind::Fixed).unwrap(), "FIXED");
        let unknown = serde_json::json!({ "discountType": "BOGO", "discountValue": 1 });
        assert!(
            serde_json::from_value::<CouponDiscount>(unknown).is_err(),
            "an unknown kind is refused, not priced as FIXED"
        );
    }
}
