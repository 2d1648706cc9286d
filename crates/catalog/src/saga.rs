//! The catalog's steps of the order saga, each beside its undo:
//! `order-created` → reserve → `stock-decreased` / `stock-decrease-failed`;
//! `coupon-use-failed`, `order-expired`, `order-cancelled` → release.

use std::sync::Arc;

use async_trait::async_trait;
use db::Tx;
use eventbus::{EventBus, Handler};
use events::{
    order::{
        CouponUseFailed, OrderCancelled, OrderCreated, OrderExpired, SagaFailure,
        StockDecreaseFailed, StockDecreased,
    },
    topics, Envelope,
};

use crate::{
    stock::{self, ReserveError},
    Catalog,
};

impl Catalog {
    /// The catalog's consumers of the order saga: reserve an order's stock, and release it.
    /// Replies go out through `bus`'s outbox.
    pub fn handlers(&self, bus: &EventBus) -> Vec<Arc<dyn Handler>> {
        vec![
            Arc::new(ReserveStock {
                catalog: self.clone(),
                bus: bus.clone(),
            }),
            Arc::new(ReleaseStock {
                catalog: self.clone(),
            }),
        ]
    }
}

/// Consumer group `catalog-reserve`.
pub struct ReserveStock {
    catalog: Catalog,
    bus: EventBus,
}

#[async_trait]
impl Handler for ReserveStock {
    fn group(&self) -> &str {
        "catalog-reserve"
    }

    /// Stock rows are the hottest rows there are: one event per transaction.
    fn batch_limit(&self) -> usize {
        1
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::ORDER_CREATED.to_owned()]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let order: OrderCreated = event.decode()?;
        let failed = |reason: SagaFailure, option: Option<i64>| {
            Envelope::caused_by(
                &StockDecreaseFailed {
                    order_id: order.order_id,
                    reason,
                    product_option_id: option,
                },
                event,
            )
        };
        let outcome = match stock::reserve(&self.catalog, tx, order.order_id, &order.items).await {
            Ok(reserved) => Envelope::caused_by(
                &StockDecreased {
                    order_id: order.order_id,
                    user_id: order.user_id,
                    user_coupon_id: order.user_coupon_id,
                    items: reserved,
                },
                event,
            ),
            Err(ReserveError::OutOfStock(option)) => failed(SagaFailure::OutOfStock, Some(option)),
            Err(ReserveError::AlreadyFailed) => failed(SagaFailure::OutOfStock, None),
            Err(ReserveError::UnknownOption(option)) => failed(SagaFailure::Internal, Some(option)),
            Err(ReserveError::Closed) => failed(SagaFailure::Cancelled, None),
            Err(ReserveError::Unknown(error)) => return Err(error),
        };
        self.bus.outbox().append(tx, &[outcome]).await?;
        Ok(())
    }
}

/// Consumer group `catalog-release`: the undo of [`ReserveStock`].
pub struct ReleaseStock {
    catalog: Catalog,
}

#[async_trait]
impl Handler for ReleaseStock {
    fn group(&self) -> &str {
        "catalog-release"
    }

    /// Stock rows are the hottest rows there are: one event per transaction.
    fn batch_limit(&self) -> usize {
        1
    }

    fn topics(&self) -> Vec<String> {
        [
            topics::COUPON_USE_FAILED,
            topics::ORDER_EXPIRED,
            topics::ORDER_CANCELLED,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let order_id = match event.topic() {
            topics::COUPON_USE_FAILED => event.decode::<CouponUseFailed>()?.order_id,
            topics::ORDER_EXPIRED => event.decode::<OrderExpired>()?.order_id,
            _ => event.decode::<OrderCancelled>()?.order_id,
        };
        let units = stock::release(&self.catalog, tx, order_id).await?;
        tracing::debug!(order_id, units, "order's stock released");
        Ok(())
    }
}
