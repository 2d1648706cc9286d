//! Listing a user's coupons.

use chrono::{DateTime, Utc};
use db::{on_db, sqlx, Db};

use super::{UserCoupon, UserCouponStatus};
use crate::DiscountType;

type Row = (
    i64,
    i64,
    String,
    String,
    i64,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

/// The coupons of `user_id`, newest first.
pub async fn list(db: &Db, user_id: i64) -> anyhow::Result<Vec<UserCoupon>> {
    let rows: Vec<Row> = on_db!(db, c => sqlx::query_as(
        "SELECT uc.id, uc.coupon_id, c.name, c.discount_type, c.discount_value, uc.status, \
                uc.issued_at, uc.used_at, c.expires_at \
         FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id \
         WHERE uc.user_id = $1 ORDER BY uc.id DESC",
    )
    .bind(user_id)
    .fetch_all(c)
    .await)?;
    let now = Utc::now();
    rows.into_iter()
        .map(
            |(id, coupon_id, name, kind, value, status, issued_at, used_at, expires_at)| {
                let status = match status.as_str() {
                    "USED" => UserCouponStatus::Used,
                    _ if expires_at <= now => UserCouponStatus::Expired,
                    _ => UserCouponStatus::Available,
                };
                Ok(UserCoupon {
                    user_coupon_id: id,
                    coupon_id,
                    name,
                    discount_type: DiscountType::parse(&kind)?,
                    discount_value: value,
                    status,
                    issued_at,
                    used_at,
                    expires_at,
                })
            },
        )
        .collect()
}
