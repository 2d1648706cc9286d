//! Reading a coupon.

use chrono::{DateTime, Utc};
use db::{on_db, sqlx, Db};

use super::{Coupon, DiscountType};
use crate::CouponError;

/// A `coupons` row.
#[derive(sqlx::FromRow)]
pub(crate) struct CouponRow {
    pub id: i64,
    pub name: String,
    pub discount_type: String,
    pub discount_value: i64,
    pub total_quantity: i64,
    pub issued_quantity: i64,
    pub expires_at: DateTime<Utc>,
}

impl CouponRow {
    pub(crate) async fn load(db: &Db, id: i64) -> sqlx::Result<Option<Self>> {
        on_db!(db, c => sqlx::query_as(
            "SELECT id, name, discount_type, discount_value, total_quantity, issued_quantity, expires_at \
             FROM coupons WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(c)
        .await)
    }

    fn into_coupon(self) -> anyhow::Result<Coupon> {
        Ok(Coupon {
            id: self.id,
            name: self.name,
            discount_type: DiscountType::parse(&self.discount_type)?,
            discount_value: self.discount_value,
            total_quantity: self.total_quantity,
            remaining_quantity: self.total_quantity - self.issued_quantity,
            expires_at: self.expires_at,
        })
    }
}

/// The coupon `id`, with the units not yet issued; `NotFound` if there is none.
pub async fn find(db: &Db, id: i64) -> Result<Coupon, CouponError> {
    let row = CouponRow::load(db, id)
        .await?
        .ok_or(CouponError::NotFound)?;
    Ok(row.into_coupon()?)
}

/// A coupon as an operator follows its drop: the coupon, and its finished issue tasks.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponDrop {
    #[serde(flatten)]
    pub coupon: Coupon,
    pub issued: i64,
    pub tasks_succeeded: i64,
    pub tasks_failed: i64,
}

/// A `coupons` row with its finished issue tasks counted.
#[derive(sqlx::FromRow)]
struct DropRow {
    #[sqlx(flatten)]
    coupon: CouponRow,
    tasks_succeeded: i64,
    tasks_failed: i64,
}

/// The `limit` newest coupons, each with how many units were issued and how its finished
/// issue tasks ended (one query).
pub async fn drops(db: &Db, limit: i64) -> Result<Vec<CouponDrop>, CouponError> {
    let rows: Vec<DropRow> = on_db!(db, c => sqlx::query_as(
        "SELECT c.id, c.name, c.discount_type, c.discount_value, c.total_quantity, \
                c.issued_quantity, c.expires_at, \
                COALESCE(SUM(CASE WHEN t.status = 'SUCCESS' THEN 1 ELSE 0 END), 0) AS tasks_succeeded, \
                COALESCE(SUM(CASE WHEN t.status = 'FAILED' THEN 1 ELSE 0 END), 0) AS tasks_failed \
         FROM (SELECT * FROM coupons ORDER BY id DESC LIMIT $1) c \
         LEFT JOIN coupon_tasks t ON t.coupon_id = c.id \
         GROUP BY c.id, c.name, c.discount_type, c.discount_value, c.total_quantity, \
                  c.issued_quantity, c.expires_at \
         ORDER BY c.id DESC",
    )
    .bind(limit)
    .fetch_all(c)
    .await)?;
    rows.into_iter()
        .map(|row| {
            Ok(CouponDrop {
                issued: row.coupon.issued_quantity,
                coupon: row.coupon.into_coupon()?,
                tasks_succeeded: row.tasks_succeeded,
                tasks_failed: row.tasks_failed,
            })
        })
        .collect()
}
