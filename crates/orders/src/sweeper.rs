//! The sweeper: expires orders past their deadline, and reports and re-drives sagas that made
//! no progress. Every instance may run it: each change is a conditional `UPDATE`, so two
//! sweepers never expire or re-drive an order twice.

use chrono::{DateTime, Utc};
use db::{exec, on_db, on_tx, sqlx, Tx};
use events::{order::OrderExpired, Envelope};
use metrics::{counter, gauge};
use tokio_util::sync::CancellationToken;

use crate::{
    place::write_created,
    status::{move_status, record_change},
    OrderStatus, Orders,
};

/// How many orders one sweep handles of each kind; the next sweep takes the rest.
const BATCH: i64 = 200;
/// Re-drives per stuck saga before the sweeper only waits for its expiry.
pub const MAX_REDRIVES: i64 = 3;

/// Sweeps every `sweep_every` until `stop`.
pub async fn run(orders: Orders, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(orders.settings.sweep_every) => {}
            () = stop.cancelled() => return,
        }
        let now = Utc::now();
        if let Err(error) = expire_due(&orders, now).await {
            tracing::warn!(error = format!("{error:#}"), "expiring orders failed");
        }
        if let Err(error) = redrive_stuck(&orders, now).await {
            tracing::warn!(error = format!("{error:#}"), "checking stuck sagas failed");
        }
    }
}

/// Expires, at `now`, the orders unpaid past their payment deadline and those still `PENDING`
/// a payment window after they were placed; returns how many it expired.
pub async fn expire_due(orders: &Orders, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let given_up = now - orders.settings.payment_window;
    let due: Vec<i64> = on_db!(&orders.db, c => sqlx::query_scalar(
        "SELECT id FROM (SELECT id FROM orders WHERE status = 'AWAITING_PAYMENT' \
         AND payment_deadline < $1 ORDER BY payment_deadline LIMIT $3) AS awaiting \
         UNION ALL SELECT id FROM (SELECT id FROM orders WHERE status = 'PENDING' \
         AND created_at < $2 ORDER BY created_at LIMIT $3) AS pending",
    )
    .bind(now)
    .bind(given_up)
    .bind(BATCH)
    .fetch_all(c)
    .await)?;
    let mut expired = 0;
    for id in due {
        let mut tx = orders.db.begin().await?;
        if expire(orders, &mut tx, id).await? {
            tx.commit().await?;
            expired += 1;
        }
    }
    Ok(expired)
}

/// `PENDING` or `AWAITING_PAYMENT` → `EXPIRED` with `order-expired`; `false` when the order
/// was closed first.
async fn expire(orders: &Orders, tx: &mut Tx, id: i64) -> anyhow::Result<bool> {
    let open = [OrderStatus::Pending, OrderStatus::AwaitingPayment];
    if !move_status(tx, id, &open, OrderStatus::Expired).await? {
        return Ok(false);
    }
    let event = Envelope::new(&OrderExpired { order_id: id });
    orders.bus.outbox().append(tx, &[event]).await?;
    record_change(orders, tx, id).await?;
    Ok(true)
}

/// id, placed at, stock reserved at, re-drives so far
type StuckRow = (i64, DateTime<Utc>, Option<DateTime<Utc>>, i64);

/// Reports the sagas `PENDING` longer than `stuck_after` (gauge `stampede_sagas_stuck`, a
/// warning each time one is re-driven) and re-publishes `order-created` for each, at most
/// [`MAX_REDRIVES`] times, spaced `stuck_after` apart. That is safe: every step is idempotent
/// per order (a reserve returns what the order holds, a coupon use the same discount, a
/// failed step fails again) and an order that is no longer `PENDING` ignores the replies.
/// Returns how many it re-drove.
pub async fn redrive_stuck(orders: &Orders, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let stuck_after = orders.settings.stuck_after;
    let stuck: Vec<StuckRow> = on_db!(&orders.db, c => sqlx::query_as(
        "SELECT id, created_at, stock_reserved_at, CAST(redrives AS BIGINT) FROM orders \
         WHERE status = 'PENDING' AND created_at < $1 ORDER BY created_at LIMIT $2",
    )
    .bind(now - stuck_after)
    .bind(BATCH)
    .fetch_all(c)
    .await)?;
    gauge!("stampede_sagas_stuck").set(stuck.len() as f64);
    let mut redriven = 0;
    for (id, created_at, stock_reserved_at, redrives) in stuck {
        let due = created_at + stuck_after * (redrives as u32 + 1);
        if redrives >= MAX_REDRIVES || due > now {
            continue;
        }
        let mut tx = orders.db.begin().await?;
        if redrive(orders, &mut tx, id, redrives).await? {
            tx.commit().await?;
            redriven += 1;
            counter!("stampede_saga_redrives_total").increment(1);
            let step = if stock_reserved_at.is_some() {
                "coupon"
            } else {
                "stock"
            };
            tracing::warn!(
                order_id = id,
                pending_secs = (now - created_at).num_seconds(),
                waiting_for = step,
                redrive = redrives + 1,
                "saga stuck in PENDING; re-publishing order-created"
            );
        }
    }
    Ok(redriven)
}

async fn redrive(orders: &Orders, tx: &mut Tx, id: i64, redrives: i64) -> anyhow::Result<bool> {
    let claimed = exec!(
        tx,
        "UPDATE orders SET redrives = redrives + 1 \
         WHERE id = $1 AND status = 'PENDING' AND redrives = $2",
        id,
        redrives
    )?;
    if claimed == 0 {
        return Ok(false);
    }
    let (user_id, user_coupon_id): (i64, Option<i64>) = on_tx!(tx, c => sqlx::query_as(
        "SELECT user_id, user_coupon_id FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_one(c)
    .await)?;
    let lines: Vec<(i64, i64)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT product_option_id, quantity FROM order_items WHERE order_id = $1",
    )
    .bind(id)
    .fetch_all(c)
    .await)?;
    write_created(orders, tx, id, user_id, user_coupon_id, lines).await?;
    Ok(true)
}
