//! Using a coupon for an order (undone by `restore_for_order.rs`).

use chrono::{DateTime, Utc};
use db::{exec, on_tx, sqlx, Tx};

use super::{CouponUseError, Discount};
use crate::DiscountType;

/// A user coupon with its coupon's terms.
#[derive(sqlx::FromRow)]
struct CouponState {
    owner: i64,
    status: String,
    used_by: Option<i64>,
    discount_type: String,
    discount_value: i64,
    expires_at: DateTime<Utc>,
}

/// Marks `user_coupon_id` used by `order_id` in `tx` and returns its discount. Idempotent per
/// order: using it again for the same order returns the same discount. Refused when the coupon
/// is not `user_id`'s, is used by another order, or has expired at `now`. A conditional
/// `UPDATE` decides between concurrent orders.
pub async fn use_for_order(
    tx: &mut Tx,
    user_coupon_id: i64,
    user_id: i64,
    order_id: i64,
    now: DateTime<Utc>,
) -> Result<Discount, CouponUseError> {
    let row: Option<CouponState> = on_tx!(tx, c => sqlx::query_as(
        "SELECT uc.user_id AS owner, uc.status, uc.order_id AS used_by, c.discount_type, \
         c.discount_value, c.expires_at FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id WHERE uc.id = $1",
    )
    .bind(user_coupon_id)
    .fetch_optional(c)
    .await)?;
    let coupon = row.ok_or(CouponUseError::NotFound)?;
    let discount = Discount {
        discount_type: DiscountType::parse(&coupon.discount_type)?,
        discount_value: coupon.discount_value,
    };
    if coupon.owner != user_id {
        return Err(CouponUseError::NotOwned);
    }
    if coupon.status == "USED" {
        return match coupon.used_by {
            Some(order) if order == order_id => Ok(discount),
            _ => Err(CouponUseError::AlreadyUsed),
        };
    }
    if coupon.expires_at <= now {
        return Err(CouponUseError::Expired);
    }
    let used = exec!(
        tx,
        "UPDATE user_coupons SET status = 'USED', order_id = $2, used_at = $3 \
         WHERE id = $1 AND status = 'AVAILABLE'",
        user_coupon_id,
        order_id,
        now
    )?;
    if used == 0 {
        return Err(CouponUseError::AlreadyUsed);
    }
    Ok(discount)
}
