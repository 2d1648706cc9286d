//! Topic names of the design (`docs/design.md`, "Events"). They are what operators see in Kafka, so they are
//! part of the design and never renamed casually.

pub const ORDER_CREATED: &str = "order-created";
pub const STOCK_DECREASED: &str = "stock-decreased";
pub const STOCK_DECREASE_FAILED: &str = "stock-decrease-failed";
pub const COUPON_USED: &str = "coupon-used";
pub const COUPON_USE_FAILED: &str = "coupon-use-failed";
pub const ORDER_PAID: &str = "order-paid";
pub const ORDER_EXPIRED: &str = "order-expired";
pub const ORDER_CANCELLED: &str = "order-cancelled";
pub const PRODUCT_SOLD: &str = "product-sold";
pub const COUPON_ISSUED: &str = "coupon-issued";
pub const COUPON_ISSUED_SUCCESS: &str = "coupon-issued-success";
pub const COUPON_ISSUE_FAILED: &str = "coupon-issue-failed";

/// Every topic Stampede publishes to; the Kafka adapter creates them at start.
pub const ALL: &[&str] = &[
    ORDER_CREATED,
    STOCK_DECREASED,
    STOCK_DECREASE_FAILED,
    COUPON_USED,
    COUPON_USE_FAILED,
    ORDER_PAID,
    ORDER_EXPIRED,
    ORDER_CANCELLED,
    PRODUCT_SOLD,
    COUPON_ISSUED,
    COUPON_ISSUED_SUCCESS,
    COUPON_ISSUE_FAILED,
];
