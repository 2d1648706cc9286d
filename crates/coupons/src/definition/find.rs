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

/// The `limit` newest coupons, each with how many units were issued and how its finished
/// issue tasks ended.
pub async fn drops(db: &Db, limit: i64) -> Result<Vec<CouponDrop>, CouponError> {
    let rows: Vec<CouponRow> = on_db!(db, c => sqlx::query_as(
        "SELECT id, name, discount_type, discount_value, total_quantity, issued_quantity, expires_at \
         FROM coupons ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(c)
    .await)?;
    let mut drops = Vec::with_capacity(rows.len());
    for row in rows {
        let (succeeded, failed): (i64, i64) = on_db!(db, c => sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN status = 'SUCCESS' THEN 1 ELSE 0 END), 0), \
                    COALESCE(SUM(CASE WHEN status = 'FAILED' THEN 1 ELSE 0 END), 0) \
             FROM coupon_tasks WHERE coupon_id = $1",
        )
        .bind(row.id)
        .fetch_one(c)
        .await)?;
        let issued = row.issued_quantity;
        drops.push(CouponDrop {
            coupon: row.into_coupon()?,
            issued,
            tasks_succeeded: succeeded,
            tasks_failed: failed,
        });
    }
    Ok(drops)
}
