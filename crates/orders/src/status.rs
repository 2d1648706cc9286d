//! Status changes: each is one conditional `UPDATE`, and is stored as served for SSE replay.

use chrono::Utc;
use db::{exec, on_tx, sqlx, Tx};
use metrics::counter;

use crate::{find::find_in, order_channel, Order, OrderError, OrderStatus, Orders};

/// Moves order `id` to `to` if it is in one of `from`; `false` (and nothing changed) when it
/// is not — someone else moved it first.
pub(crate) async fn move_status(
    tx: &mut Tx,
    id: i64,
    from: &[OrderStatus],
    to: OrderStatus,
) -> sqlx::Result<bool> {
    let from = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    let moved = exec!(
        tx,
        &format!(
            "UPDATE orders SET status = $2, version = version + 1, updated_at = $3 \
             WHERE id = $1 AND status IN ({from})"
        ),
        id,
        to.as_str(),
        Utc::now()
    )?;
    Ok(moved == 1)
}

/// Stores order `id` as it now is, as the change its version numbers, and wakes its SSE
/// streams once `tx` commits; returns the order.
pub(crate) async fn record_change(
    orders: &Orders,
    tx: &mut Tx,
    id: i64,
) -> Result<Order, OrderError> {
    let order = find_in(tx, id).await?;
    let body = serde_json::to_string(&order).map_err(anyhow::Error::from)?;
    exec!(
        tx,
        "INSERT INTO order_changes (order_id, version, body, changed_at) \
         SELECT id, version, $2, $3 FROM orders WHERE id = $1",
        id,
        &body,
        order.updated_at
    )?;
    let cache = orders.cache.clone();
    let (status, reason) = (
        order.status,
        order.failure_reason.clone().unwrap_or_default(),
    );
    tx.on_commit(async move {
        counter!("stampede_saga_outcomes_total", "status" => status.as_str(), "reason" => reason)
            .increment(1);
        if let Err(error) = cache.publish(&order_channel(id), "").await {
            tracing::warn!(
                order_id = id,
                error = format!("{error:#}"),
                "announcing an order change failed; streams re-read it"
            );
        }
    });
    Ok(order)
}

/// The status order `id` is in now (`NotFound` if there is none).
pub(crate) async fn current_status(tx: &mut Tx, id: i64) -> Result<OrderStatus, OrderError> {
    let status: Option<String> = on_tx!(tx, c => sqlx::query_scalar(
        "SELECT status FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await)?;
    Ok(OrderStatus::parse(&status.ok_or(OrderError::NotFound)?)?)
}
