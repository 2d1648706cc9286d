//! Paying an order with points: the points, the payment, `PAID`, `order-paid` and one
//! `product-sold` per item, in one transaction.

use chrono::{DateTime, Utc};
use db::{on_tx, sqlx, Tx};
use events::{
    order::{OrderPaid, ProductSold},
    Envelope,
};
use points::balance::PointsError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    status::{current_status, move_status, record_change},
    OrderError, OrderStatus, Orders,
};

/// A payment as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub payment_id: i64,
    pub order_id: i64,
    pub amount: i64,
    /// Always `PAID`.
    pub status: OrderStatus,
    pub paid_at: DateTime<Utc>,
}

/// Pays order `id` with its owner's points, in `tx`. `NotPayable` unless it is
/// `AWAITING_PAYMENT` within its deadline; `InsufficientPoints` leaves it payable (the caller
/// rolls `tx` back).
pub async fn pay(orders: &Orders, tx: &mut Tx, id: i64) -> Result<Payment, OrderError> {
    let row: Option<(i64, String, i64, Option<DateTime<Utc>>)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT user_id, status, total_amount, payment_deadline FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await)?;
    let (user_id, status, amount, deadline) = row.ok_or(OrderError::NotFound)?;
    let status = OrderStatus::parse(&status)?;
    let now = Utc::now();
    if status != OrderStatus::AwaitingPayment || deadline.is_none_or(|d| d <= now) {
        return Err(OrderError::NotPayable(status));
    }
    // The conditional move decides against a concurrent expiry, cancel or second payment.
    if !move_status(tx, id, &[OrderStatus::AwaitingPayment], OrderStatus::Paid).await? {
        return Err(OrderError::NotPayable(current_status(tx, id).await?));
    }
    points::balance::use_for_order(tx, user_id, id, amount)
        .await
        .map_err(|error| match error {
            PointsError::Insufficient { balance, needed } => {
                OrderError::InsufficientPoints { balance, needed }
            }
            other => OrderError::Unknown(other.into()),
        })?;
    let payment_id: i64 = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO payments (order_id, user_id, amount, paid_at) VALUES ($1, $2, $3, $4) \
         RETURNING id",
    )
    .bind(id)
    .bind(user_id)
    .bind(amount)
    .bind(now)
    .fetch_one(c)
    .await)?;
    let sold: Vec<(i64, i64, i64)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT product_option_id, product_id, quantity FROM order_items WHERE order_id = $1 \
         ORDER BY product_option_id",
    )
    .bind(id)
    .fetch_all(c)
    .await)?;
    let mut events = vec![Envelope::new(&OrderPaid {
        order_id: id,
        user_id,
        amount,
        paid_at: now,
    })];
    events.extend(
        sold.into_iter()
            .map(|(product_option_id, product_id, quantity)| {
                Envelope::new(&ProductSold {
                    order_id: id,
                    product_option_id,
                    product_id,
                    quantity,
                    sold_at: now,
                })
            }),
    );
    orders.bus.outbox().append(tx, &events).await?;
    record_change(orders, tx, id).await?;
    Ok(Payment {
        payment_id,
        order_id: id,
        amount,
        status: OrderStatus::Paid,
        paid_at: now,
    })
}
