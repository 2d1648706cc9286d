//! The orders' side of the saga: record the steps catalog and coupons report, then price the
//! order (`coupon-used` → `AWAITING_PAYMENT`) or fail it (`stock-decrease-failed`,
//! `coupon-use-failed` → `FAILED` with the reason).
//!
//! A reply for an order that is no longer `PENDING` changes nothing: the order was cancelled
//! or expired meanwhile, and the event that closed it makes catalog and coupons undo whatever
//! they did (a failure with reason `CANCELLED` is their answer to exactly that).

use async_trait::async_trait;
use chrono::Utc;
use db::{exec, on_tx, sqlx, Tx};
use eventbus::Handler;
use events::{
    order::{CouponUseFailed, CouponUsed, SagaFailure, StockDecreaseFailed, StockDecreased},
    topics, Envelope,
};
use metrics::histogram;

use crate::{
    pricing,
    status::{move_status, record_change},
    OrderStatus, Orders,
};

/// Consumer group `order-saga`.
pub struct OrderSaga {
    orders: Orders,
}

impl OrderSaga {
    pub fn new(orders: Orders) -> Self {
        Self { orders }
    }
}

#[async_trait]
impl Handler for OrderSaga {
    fn group(&self) -> &str {
        "order-saga"
    }

    fn topics(&self) -> Vec<String> {
        [
            topics::STOCK_DECREASED,
            topics::STOCK_DECREASE_FAILED,
            topics::COUPON_USED,
            topics::COUPON_USE_FAILED,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        match event.topic() {
            topics::STOCK_DECREASED => {
                let reserved: StockDecreased = event.decode()?;
                exec!(
                    tx,
                    "UPDATE orders SET stock_reserved_at = COALESCE(stock_reserved_at, $2) \
                     WHERE id = $1",
                    reserved.order_id,
                    Utc::now()
                )?;
            }
            topics::COUPON_USED => price(&self.orders, tx, event.decode()?).await?,
            topics::STOCK_DECREASE_FAILED => {
                let failed: StockDecreaseFailed = event.decode()?;
                fail(&self.orders, tx, failed.order_id, failed.reason).await?;
            }
            _ => {
                let failed: CouponUseFailed = event.decode()?;
                fail(&self.orders, tx, failed.order_id, failed.reason).await?;
            }
        }
        Ok(())
    }
}

/// `PENDING` → `AWAITING_PAYMENT` with the amounts, the reserved unit prices and the payment
/// deadline.
async fn price(orders: &Orders, tx: &mut Tx, used: CouponUsed) -> anyhow::Result<()> {
    let id = used.order_id;
    if !move_status(
        tx,
        id,
        &[OrderStatus::Pending],
        OrderStatus::AwaitingPayment,
    )
    .await?
    {
        tracing::debug!(order_id = id, "coupon-used for an order no longer pending");
        return Ok(());
    }
    let amounts = pricing::price(&used.items, used.discount.as_ref());
    let now = Utc::now();
    let deadline = now + orders.settings.payment_window;
    exec!(
        tx,
        "UPDATE orders SET original_amount = $2, discount_amount = $3, total_amount = $4, \
         payment_deadline = $5, coupon_applied_at = $6, \
         stock_reserved_at = COALESCE(stock_reserved_at, $6) WHERE id = $1",
        id,
        amounts.original,
        amounts.discount,
        amounts.total,
        deadline,
        now
    )?;
    // The catalog's price at reservation is the one charged.
    let placed: Vec<(i64, i64)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT product_option_id, unit_price FROM order_items WHERE order_id = $1",
    )
    .bind(id)
    .fetch_all(c)
    .await)?;
    for line in &used.items {
        if !placed.contains(&(line.product_option_id, line.unit_price)) {
            exec!(
                tx,
                "UPDATE order_items SET unit_price = $3 WHERE order_id = $1 AND product_option_id = $2",
                id,
                line.product_option_id,
                line.unit_price
            )?;
        }
    }
    let order = record_change(orders, tx, id).await?;
    let waited = (now - order.created_at).to_std().unwrap_or_default();
    tx.on_commit(async move {
        histogram!("stampede_order_pricing_seconds").record(waited.as_secs_f64());
    });
    Ok(())
}

/// `PENDING` → `FAILED` with `reason`, unless the reason says the order was closed first.
async fn fail(orders: &Orders, tx: &mut Tx, id: i64, reason: SagaFailure) -> anyhow::Result<()> {
    if reason == SagaFailure::Cancelled
        || !move_status(tx, id, &[OrderStatus::Pending], OrderStatus::Failed).await?
    {
        return Ok(());
    }
    exec!(
        tx,
        "UPDATE orders SET failure_reason = $2 WHERE id = $1",
        id,
        reason.as_str()
    )?;
    record_change(orders, tx, id).await?;
    Ok(())
}
