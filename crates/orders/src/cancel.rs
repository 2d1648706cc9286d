//! Cancelling an order before it is paid: `CANCELLED` and `order-cancelled`, on which catalog
//! releases the stock and coupons restore the coupon.

use db::Tx;
use events::{order::OrderCancelled, Envelope};

use crate::{
    status::{current_status, move_status, record_change},
    Order, OrderError, OrderStatus, Orders,
};

/// Cancels order `id` in `tx`; `NotCancellable` unless it is `PENDING` or `AWAITING_PAYMENT`.
pub async fn cancel(orders: &Orders, tx: &mut Tx, id: i64) -> Result<Order, OrderError> {
    let open = [OrderStatus::Pending, OrderStatus::AwaitingPayment];
    if !move_status(tx, id, &open, OrderStatus::Cancelled).await? {
        return Err(OrderError::NotCancellable(current_status(tx, id).await?));
    }
    let event = Envelope::new(&OrderCancelled { order_id: id });
    orders.bus.outbox().append(tx, &[event]).await?;
    record_change(orders, tx, id).await
}
