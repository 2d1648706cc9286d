//! Placing an order: the `PENDING` order and `order-created`, in one transaction.

use std::collections::HashSet;

use chrono::Utc;
use db::{on_tx, sqlx, Tx};
use events::{
    order::{OrderCreated, OrderLine},
    Envelope,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{status::record_change, Order, OrderError, Orders};

/// What a client asks for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    /// 1 to 50 lines, each option once.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<NewLine>,
    /// A coupon of the caller's to apply.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub user_coupon_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewLine {
    #[schema(minimum = 1)]
    pub product_option_id: i64,
    /// 1 to 1,000.
    #[schema(minimum = 1, maximum = 1_000)]
    pub quantity: i64,
}

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i64 = 1000;

impl NewOrder {
    /// Checks the shape of the request (`docs/api.md`: 1–50 items, quantity 1–1000, no duplicate
    /// option); whether the options exist is the catalog's to say.
    pub fn validate(&self) -> Result<(), OrderError> {
        let invalid = |field, message| Err(OrderError::Invalid { field, message });
        if self.items.is_empty() || self.items.len() > MAX_LINES {
            return invalid("items", "must hold 1 to 50 lines");
        }
        let mut seen = HashSet::new();
        for line in &self.items {
            if line.product_option_id < 1 {
                return invalid("items.productOptionId", "must be a positive id");
            }
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                return invalid("items.quantity", "must be 1 to 1000");
            }
            if !seen.insert(line.product_option_id) {
                return invalid("items", "must not name an option twice");
            }
        }
        if self.user_coupon_id.is_some_and(|id| id < 1) {
            return invalid("userCouponId", "must be a positive id");
        }
        Ok(())
    }
}

/// A line as the catalog describes it when the order is placed: the shape the catalog sends
/// back once it has reserved the stock, when it confirms (or corrects) the price.
pub type Line = events::order::ReservedLine;

/// Stores a `PENDING` order of `user_id` with `lines` and writes `order-created`, in `tx`.
/// Refused with `TooManyOpenOrders` while the user holds the maximum of unpaid orders, so one
/// account cannot reserve a sale's stock and let it expire; concurrent placements of one user
/// are counted one after the other.
pub async fn place(
    orders: &Orders,
    tx: &mut Tx,
    user_id: i64,
    lines: &[Line],
    user_coupon_id: Option<i64>,
) -> Result<Order, OrderError> {
    let max = orders.settings.max_open_orders;
    if open_orders(tx, user_id).await? >= max {
        return Err(OrderError::TooManyOpenOrders(max));
    }
    let now = Utc::now();
    let id: i64 = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO orders (user_id, status, user_coupon_id, created_at, updated_at) \
         VALUES ($1, 'PENDING', $2, $3, $3) RETURNING id",
    )
    .bind(user_id)
    .bind(user_coupon_id)
    .bind(now)
    .fetch_one(c)
    .await)?;
    // One statement for every line.
    let rows = (0..lines.len())
        .map(|i| {
            let p = i * 7;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO order_items (order_id, product_option_id, product_id, product_name, \
         option_name, unit_price, quantity) VALUES {rows}"
    );
    on_tx!(tx, c => {
        let mut insert = sqlx::query(&sql);
        for line in lines {
            insert = insert
                .bind(id)
                .bind(line.product_option_id)
                .bind(line.product_id)
                .bind(&line.product_name)
                .bind(&line.option_name)
                .bind(line.unit_price)
                .bind(line.quantity);
        }
        insert.execute(c).await.map(|r| r.rows_affected())
    })?;
    let items = lines.iter().map(|l| (l.product_option_id, l.quantity));
    write_created(orders, tx, id, user_id, user_coupon_id, items).await?;
    record_change(orders, tx, id).await
}

/// The user's `PENDING` and `AWAITING_PAYMENT` orders. On PostgreSQL the user's placements
/// take a transaction lock first, so two of them cannot both count the same total (SQLite's
/// write transactions already run one at a time).
async fn open_orders(tx: &mut Tx, user_id: i64) -> sqlx::Result<i64> {
    if tx.backend() == db::Backend::Postgres {
        on_tx!(tx, c => sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':open-orders'), \
             ($1 % 2147483647)::int)",
        )
        .bind(user_id)
        .execute(c)
        .await
        .map(|_| ()))?;
    }
    on_tx!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE user_id = $1 AND status IN ('PENDING', 'AWAITING_PAYMENT')",
    )
    .bind(user_id)
    .fetch_one(c)
    .await)
}

/// Writes `order-created` for order `id` with its `(option, quantity)` lines: when it is
/// placed, and again when the sweeper re-drives its stuck saga.
pub(crate) async fn write_created(
    orders: &Orders,
    tx: &mut Tx,
    id: i64,
    user_id: i64,
    user_coupon_id: Option<i64>,
    items: impl IntoIterator<Item = (i64, i64)>,
) -> sqlx::Result<()> {
    let created = OrderCreated {
        order_id: id,
        user_id,
        items: items
            .into_iter()
            .map(|(product_option_id, quantity)| OrderLine {
                product_option_id,
                quantity,
            })
            .collect(),
        user_coupon_id,
    };
    orders
        .bus
        .outbox()
        .append(tx, &[Envelope::new(&created)])
        .await
}
