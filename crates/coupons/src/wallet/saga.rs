//! The coupons' steps of the order saga, each beside its undo:
//! `stock-decreased` → use the order's coupon → `coupon-used` (with the discount; none without
//! a coupon) or `coupon-use-failed`; `order-expired`, `order-cancelled` → restore it.
//!
//! Both steps write the order's `coupon_orders` row first, so they serialize per order and a
//! restore that arrives before the use (Kafka orders events per topic, not across topics)
//! makes the use refuse (`CANCELLED`) instead of spending the coupon of a dead order.

use async_trait::async_trait;
use chrono::Utc;
use db::{exec, on_tx, sqlx, Tx};
use eventbus::Handler;
use events::{
    order::{
        CouponDiscount, CouponUseFailed, CouponUsed, OrderCancelled, OrderExpired, SagaFailure,
        StockDecreased,
    },
    topics, Envelope,
};

use super::{restore_for_order, use_for_order, CouponUseError};
use crate::Coupons;

/// Consumer group `coupon-use`.
pub struct UseCoupon {
    coupons: Coupons,
}

/// Consumer group `coupon-restore`: the undo of [`UseCoupon`].
pub struct RestoreCoupon;

impl UseCoupon {
    pub fn new(coupons: Coupons) -> Self {
        Self { coupons }
    }
}

#[async_trait]
impl Handler for UseCoupon {
    fn group(&self) -> &str {
        "coupon-use"
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::STOCK_DECREASED.to_owned()]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let order: StockDecreased = event.decode()?;
        let outcome = use_coupon(tx, &order).await?;
        let next = match outcome {
            Ok(discount) => Envelope::caused_by(
                &CouponUsed {
                    order_id: order.order_id,
                    items: order.items,
                    user_coupon_id: order.user_coupon_id,
                    discount,
                },
                event,
            ),
            Err((reason, detail)) => Envelope::caused_by(
                &CouponUseFailed {
                    order_id: order.order_id,
                    reason,
                    detail,
                },
                event,
            ),
        };
        self.coupons.bus.outbox().append(tx, &[next]).await?;
        Ok(())
    }
}

type UseOutcome = Result<Option<CouponDiscount>, (SagaFailure, String)>;

async fn use_coupon(tx: &mut Tx, order: &StockDecreased) -> anyhow::Result<UseOutcome> {
    let started = exec!(
        tx,
        "INSERT INTO coupon_orders (order_id, state) VALUES ($1, 'USED') ON CONFLICT DO NOTHING",
        order.order_id
    )?;
    if started == 0 {
        let state: String = on_tx!(tx, c => sqlx::query_scalar(
            "SELECT state FROM coupon_orders WHERE order_id = $1",
        )
        .bind(order.order_id)
        .fetch_one(c)
        .await)?;
        match state.as_str() {
            "RESTORED" => {
                return Ok(Err((
                    SagaFailure::Cancelled,
                    "the order was closed before its coupon was used".into(),
                )))
            }
            // Refused once, refused for good: the catalog may already have released the
            // order's stock on the first refusal.
            "FAILED" => {
                return Ok(Err((
                    SagaFailure::CouponInvalid,
                    "the coupon was refused for this order".into(),
                )))
            }
            _ => {}
        }
    }
    let Some(user_coupon) = order.user_coupon_id else {
        return Ok(Ok(None));
    };
    match use_for_order(tx, user_coupon, order.user_id, order.order_id, Utc::now()).await {
        Ok(discount) => Ok(Ok(Some(CouponDiscount {
            discount_type: discount.discount_type.into(),
            discount_value: discount.discount_value,
        }))),
        Err(CouponUseError::Unknown(error)) => Err(error),
        Err(refused) => {
            exec!(
                tx,
                "UPDATE coupon_orders SET state = 'FAILED' WHERE order_id = $1",
                order.order_id
            )?;
            Ok(Err((SagaFailure::CouponInvalid, refused.to_string())))
        }
    }
}

#[async_trait]
impl Handler for RestoreCoupon {
    fn group(&self) -> &str {
        "coupon-restore"
    }

    fn topics(&self) -> Vec<String> {
        vec![
            topics::ORDER_EXPIRED.to_owned(),
            topics::ORDER_CANCELLED.to_owned(),
        ]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let order_id = match event.topic() {
            topics::ORDER_EXPIRED => event.decode::<OrderExpired>()?.order_id,
            _ => event.decode::<OrderCancelled>()?.order_id,
        };
        exec!(
            tx,
            "INSERT INTO coupon_orders (order_id, state) VALUES ($1, 'RESTORED') \
             ON CONFLICT (order_id) DO UPDATE SET state = 'RESTORED'",
            order_id
        )?;
        let restored = restore_for_order(tx, order_id).await?;
        tracing::debug!(order_id, restored, "order's coupon restored");
        Ok(())
    }
}
