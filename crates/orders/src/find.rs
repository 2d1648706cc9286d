//! Reading orders: one, a user's, and the changes an order SSE stream replays.

use chrono::{DateTime, Utc};
use db::{on_db, on_tx, sqlx, Db, Tx};

use crate::{Order, OrderError, OrderItem, OrderStatus};

const ORDER_COLUMNS: &str = "id, user_id, status, user_coupon_id, original_amount, \
    discount_amount, total_amount, failure_reason, payment_deadline, created_at, updated_at";

/// An `orders` row ([`ORDER_COLUMNS`]).
#[derive(sqlx::FromRow)]
struct OrderRow {
    id: i64,
    user_id: i64,
    status: String,
    user_coupon_id: Option<i64>,
    original_amount: i64,
    discount_amount: i64,
    total_amount: i64,
    failure_reason: Option<String>,
    payment_deadline: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// An `order_items` row ([`ITEM_COLUMNS`]).
#[derive(sqlx::FromRow, Clone)]
struct ItemRow {
    order_id: i64,
    product_option_id: i64,
    product_name: String,
    option_name: String,
    unit_price: i64,
    quantity: i64,
}

/// The order `id`.
pub async fn find(db: &Db, id: i64) -> Result<Order, OrderError> {
    let rows: Vec<OrderLineRow> =
        on_db!(db, c => sqlx::query_as(&one_order()).bind(id).fetch_all(c).await)?;
    from_lines(rows)
}

/// The order `id` as `tx` sees it.
pub(crate) async fn find_in(tx: &mut Tx, id: i64) -> Result<Order, OrderError> {
    let rows: Vec<OrderLineRow> =
        on_tx!(tx, c => sqlx::query_as(&one_order()).bind(id).fetch_all(c).await)?;
    from_lines(rows)
}

/// An order's row beside one of its lines: one order is read in one round trip (every order
/// has at least one line).
#[derive(sqlx::FromRow)]
struct OrderLineRow {
    #[sqlx(flatten)]
    order: OrderRow,
    #[sqlx(flatten)]
    item: ItemRow,
}

fn one_order() -> String {
    format!(
        "SELECT {ORDER_COLUMNS}, {ITEM_COLUMNS} FROM orders JOIN order_items ON order_id = id \
         WHERE id = $1 ORDER BY product_option_id"
    )
}

fn from_lines(rows: Vec<OrderLineRow>) -> Result<Order, OrderError> {
    let mut rows = rows.into_iter();
    let first = rows.next().ok_or(OrderError::NotFound)?;
    let items = std::iter::once(first.item)
        .chain(rows.map(|row| row.item))
        .collect();
    Ok(assemble(first.order, items)?)
}

const ITEM_COLUMNS: &str =
    "order_id, product_option_id, product_name, option_name, unit_price, quantity";

/// A page of a user's orders, newest first, with the number of orders in all.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    pub items: Vec<Order>,
    pub page: i64,
    pub size: i64,
    pub total: i64,
}

/// Page `page` (from 0) of `size` orders of `user_id`, newest first, and their total.
pub async fn for_user(
    db: &Db,
    user_id: i64,
    page: i64,
    size: i64,
) -> Result<OrderPage, OrderError> {
    if page < 0 {
        return Err(OrderError::Invalid {
            field: "page",
            message: "must be at least 0",
        });
    }
    if !(1..=100).contains(&size) {
        return Err(OrderError::Invalid {
            field: "size",
            message: "must be 1 to 100",
        });
    }
    let total: i64 = on_db!(db, c => sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(c)
        .await)?;
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
    );
    let rows: Vec<OrderRow> = on_db!(db, c => sqlx::query_as(&sql)
        .bind(user_id)
        .bind(size)
        .bind(page.saturating_mul(size))
        .fetch_all(c)
        .await)?;
    let items = assemble_all(db, rows).await?;
    Ok(OrderPage {
        items,
        page,
        size,
        total,
    })
}

/// The orders of `rows` with their lines, in one more query.
async fn assemble_all(db: &Db, rows: Vec<OrderRow>) -> Result<Vec<Order>, OrderError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let list = db::id_list(rows.iter().map(|r| r.id));
    let items: Vec<ItemRow> = on_db!(db, c => sqlx::query_as(&format!(
        "SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id IN ({list}) \
         ORDER BY product_option_id"
    ))
    .fetch_all(c)
    .await)?;
    rows.into_iter()
        .map(|row| {
            let mine = items
                .iter()
                .filter(|i| i.order_id == row.id)
                .cloned()
                .collect();
            Ok(assemble(row, mine)?)
        })
        .collect()
}

/// One stored status change of an order: its version (the SSE event id), the order as it was
/// then, as JSON, and whether its status is terminal (the order changes no more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: i64,
    pub order: String,
    pub terminal: bool,
}

impl Change {
    fn new(version: i64, order: String) -> Self {
        #[derive(serde::Deserialize)]
        struct Status {
            status: OrderStatus,
        }
        let terminal = serde_json::from_str::<Status>(&order).is_ok_and(|s| s.status.is_terminal());
        Self {
            version,
            order,
            terminal,
        }
    }
}

/// The changes of order `id` after `version`, oldest first; with `None`, only the latest.
pub async fn changes(db: &Db, id: i64, after: Option<i64>) -> Result<Vec<Change>, OrderError> {
    let rows: Vec<(i64, String)> = match after {
        Some(version) => on_db!(db, c => sqlx::query_as(
            "SELECT CAST(version AS BIGINT), body FROM order_changes \
             WHERE order_id = $1 AND version > $2 ORDER BY version",
        )
        .bind(id)
        .bind(version)
        .fetch_all(c)
        .await)?,
        None => on_db!(db, c => sqlx::query_as(
            "SELECT CAST(version AS BIGINT), body FROM order_changes \
             WHERE order_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(id)
        .fetch_all(c)
        .await)?,
    };
    Ok(rows
        .into_iter()
        .map(|(version, order)| Change::new(version, order))
        .collect())
}

fn assemble(row: OrderRow, items: Vec<ItemRow>) -> anyhow::Result<Order> {
    Ok(Order {
        id: row.id,
        user_id: row.user_id,
        status: OrderStatus::parse(&row.status)?,
        items: items
            .into_iter()
            .map(|item| OrderItem {
                product_option_id: item.product_option_id,
                product_name: item.product_name,
                option_name: item.option_name,
                unit_price: item.unit_price,
                quantity: item.quantity,
            })
            .collect(),
        user_coupon_id: row.user_coupon_id,
        original_amount: row.original_amount,
        discount_amount: row.discount_amount,
        total_amount: row.total_amount,
        failure_reason: row.failure_reason,
        payment_deadline: row.payment_deadline,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// How many orders are open (`PENDING`, `AWAITING_PAYMENT`) right now, per status; each count
/// reads its status's partial index.
pub async fn open_counts(db: &Db) -> sqlx::Result<Vec<(OrderStatus, i64)>> {
    let mut counts = Vec::with_capacity(2);
    for status in [OrderStatus::Pending, OrderStatus::AwaitingPayment] {
        let count: i64 = on_db!(db, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE status = $1",
        )
        .bind(status.as_str())
        .fetch_one(c)
        .await)?;
        counts.push((status, count));
    }
    Ok(counts)
}

/// How many orders there are in each status (the saga funnel).
pub async fn status_counts(db: &Db) -> sqlx::Result<Vec<(String, i64)>> {
    on_db!(db, c => sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status")
        .fetch_all(c)
        .await)
}
