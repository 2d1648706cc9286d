//! Creating a coupon.

use chrono::Utc;
use db::{on_tx, sqlx};

use super::{Coupon, DiscountType, NewCoupon};
use crate::{gate::Snapshot, CouponError, Coupons};

/// The most units a coupon may have.
pub const MAX_QUANTITY: i64 = 10_000_000;
/// The largest `FIXED` discount, in KRW (the highest price of an option).
pub const MAX_FIXED_DISCOUNT: i64 = 1_000_000_000;

/// Checks `coupon` against the contract's limits.
pub(crate) fn validate(coupon: &NewCoupon) -> Result<(), CouponError> {
    let invalid = |field, message| Err(CouponError::Invalid { field, message });
    if !db::text::fits(&coupon.name, 5, 20) {
        return invalid("name", "must be 5 to 20 characters, not all blank");
    }
    match coupon.discount_type {
        DiscountType::Percent if !(1..=100).contains(&coupon.discount_value) => {
            return invalid("discountValue", "a PERCENT discount is 1 to 100");
        }
        DiscountType::Fixed if !(1..=MAX_FIXED_DISCOUNT).contains(&coupon.discount_value) => {
            return invalid(
                "discountValue",
                "a FIXED discount is 1 to 1,000,000,000 KRW",
            );
        }
        _ => {}
    }
    if !(0..=MAX_QUANTITY).contains(&coupon.total_quantity) {
        return invalid("totalQuantity", "must be 0 to 10,000,000");
    }
    if coupon.expires_at <= Utc::now() {
        return invalid("expiresAt", "must be in the future");
    }
    Ok(())
}

/// Stores a new coupon and opens its gate, so the first issue request needs no database read.
pub async fn create(coupons: &Coupons, new: NewCoupon) -> Result<Coupon, CouponError> {
    validate(&new)?;
    let mut tx = coupons.db.begin().await?;
    let id: i64 = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO coupons (name, discount_type, discount_value, total_quantity, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&new.name)
    .bind(new.discount_type.as_str())
    .bind(new.discount_value)
    .bind(new.total_quantity)
    .bind(new.expires_at)
    .bind(Utc::now())
    .fetch_one(c)
    .await)?;
    tx.commit().await?;
    let coupon = Coupon {
        id,
        name: new.name,
        discount_type: new.discount_type,
        discount_value: new.discount_value,
        total_quantity: new.total_quantity,
        remaining_quantity: new.total_quantity,
        expires_at: new.expires_at,
    };
    // A new coupon's gate state is known: no need to read it back from the database.
    let snapshot = Snapshot::of(id, coupon.expires_at, coupon.total_quantity, Vec::new());
    if let Err(error) = coupons.gate.load(&snapshot).await {
        // The first request rebuilds it instead.
        tracing::warn!(
            coupon_id = id,
            error = format!("{error:#}"),
            "opening the coupon's gate failed"
        );
    }
    Ok(coupon)
}
