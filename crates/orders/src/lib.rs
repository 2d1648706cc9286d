//! The orders context: orders, their side of the saga, payment and expiry (`docs/design.md`, "The order saga").
//!
//! An order is placed `PENDING` together with `order-created` ([`place`]). Catalog and coupons
//! answer with events; [`saga`] records each step they report on the order and moves it to
//! `AWAITING_PAYMENT` (priced, [`pricing`]) or `FAILED`. [`pay`] moves it to `PAID` in the same
//! transaction as the points it takes; [`cancel`] and the [`sweeper`]'s expiry close it and
//! emit the event that makes catalog and coupons undo their steps.
//!
//! Every status change is one conditional `UPDATE … WHERE status IN (…)`, so concurrent
//! changes (a payment racing the expiry, a cancel racing the pricing) have one winner, and is
//! stored as it was served in `order_changes`, which order SSE streams replay.
//!
//! Compensation is decided where the step was done: catalog and coupons each keep a per-order
//! record of their step (`order_stock`, `coupon_orders`) that the undo claims once, and that
//! refuses a step arriving after its undo. The orders context records here which steps were
//! reported done (`stock_reserved_at`, `coupon_applied_at`), which is what the sweeper reports
//! on stuck sagas.

use std::time::Duration;

use cache::Cache;
use chrono::{DateTime, Utc};
use db::Db;
use eventbus::EventBus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod cancel;
mod config;
pub mod find;
pub mod follow;
pub mod pay;
pub mod place;
pub mod pricing;
pub mod saga;
pub mod sales;
mod status;
pub mod sweeper;
pub mod trace;

#[cfg(test)]
mod tests;

pub use config::OrdersConfig;
pub use place::{Line, NewOrder};

/// Why an order operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("no such order")]
    NotFound,
    #[error("the order is {0}, not AWAITING_PAYMENT (or its payment deadline has passed)")]
    NotPayable(OrderStatus),
    #[error("the order is {0}; only PENDING or AWAITING_PAYMENT orders can be cancelled")]
    NotCancellable(OrderStatus),
    #[error("the balance is {balance} KRW, {needed} KRW needed")]
    InsufficientPoints { balance: i64, needed: i64 },
    #[error("the user already holds {0} unpaid orders; pay or cancel one first")]
    TooManyOpenOrders(i64),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<sqlx::Error> for OrderError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unknown(e.into())
    }
}

/// Where an order stands (`docs/api.md`, "Orders").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    AwaitingPayment,
    Paid,
    Failed,
    Expired,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::AwaitingPayment => "AWAITING_PAYMENT",
            Self::Paid => "PAID",
            Self::Failed => "FAILED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "PENDING" => Self::Pending,
            "AWAITING_PAYMENT" => Self::AwaitingPayment,
            "PAID" => Self::Paid,
            "FAILED" => Self::Failed,
            "EXPIRED" => Self::Expired,
            "CANCELLED" => Self::Cancelled,
            other => anyhow::bail!("unknown order status {other:?}"),
        })
    }

    /// No status follows this one.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::AwaitingPayment)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order as clients see it. Amounts are 0 until the saga has priced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_coupon_id: Option<i64>,
    pub original_amount: i64,
    pub discount_amount: i64,
    /// `max(0, originalAmount − discountAmount)`.
    pub total_amount: i64,
    /// `OUT_OF_STOCK`, `COUPON_INVALID` or `INTERNAL`, when `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Set when the order is priced; unpaid by then, it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_deadline: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A line of an order. `unitPrice` is the catalog's price, confirmed when the stock is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_option_id: i64,
    pub product_name: String,
    pub option_name: String,
    pub unit_price: i64,
    pub quantity: i64,
}

/// How orders behave in time.
#[derive(Debug, Clone, Copy)]
pub struct OrderSettings {
    /// Unpaid orders (`PENDING` or `AWAITING_PAYMENT`) one user may hold at once.
    pub max_open_orders: i64,
    /// How long a priced order stays payable; also how long an order may stay `PENDING`
    /// before the sweeper gives up on it and expires it.
    pub payment_window: Duration,
    /// A saga `PENDING` this long is reported stuck (metric and log) and re-driven.
    pub stuck_after: Duration,
    /// How often the sweeper looks.
    pub sweep_every: Duration,
}

impl Default for OrderSettings {
    fn default() -> Self {
        Self {
            max_open_orders: 10,
            payment_window: Duration::from_secs(600),
            stuck_after: Duration::from_secs(30),
            sweep_every: Duration::from_secs(1),
        }
    }
}

/// The orders context of one process: its database, cache (for SSE wake-ups) and bus.
/// Cheap to clone.
#[derive(Clone)]
pub struct Orders {
    db: Db,
    cache: Cache,
    bus: EventBus,
    settings: OrderSettings,
}

impl Orders {
    pub fn new(db: Db, cache: Cache, bus: EventBus, settings: OrderSettings) -> Self {
        Self {
            db,
            cache,
            bus,
            settings,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The consumer of the saga's replies: [`saga::OrderSaga`].
    pub fn handlers(&self) -> Vec<std::sync::Arc<dyn eventbus::Handler>> {
        vec![std::sync::Arc::new(saga::OrderSaga::new(self.clone()))]
    }
}

/// The pub/sub channel that wakes the SSE streams of order `id` after each status change.
pub fn order_channel(id: i64) -> String {
    format!("order:{id}")
}
