//! Rebuilding a coupon's gate state from the database.

use db::{on_db, sqlx};

use super::Snapshot;
use crate::{definition::CouponRow, CouponError, Coupons};

/// Loads `coupon`'s gate state from the database: stock = total − issued, users = everyone with
/// a stored result or coupon. Requests still in flight are in neither, so the rebuilt gate can
/// admit a few more than remain; the store consumer's guarded `UPDATE` turns those into
/// `SOLD_OUT`. `NotFound` when there is no such coupon.
#[tracing::instrument(skip_all, fields(coupon_id = coupon))]
pub async fn rebuild(coupons: &Coupons, coupon: i64) -> Result<(), CouponError> {
    let row = CouponRow::load(&coupons.db, coupon)
        .await?
        .ok_or(CouponError::NotFound)?;
    let users: Vec<i64> = on_db!(&coupons.db, c => sqlx::query_scalar(
        "SELECT user_id FROM coupon_tasks WHERE coupon_id = $1 \
         UNION SELECT user_id FROM user_coupons WHERE coupon_id = $1",
    )
    .bind(coupon)
    .fetch_all(c)
    .await)?;
    let snapshot = Snapshot::of(
        coupon,
        row.expires_at,
        row.total_quantity - row.issued_quantity,
        users,
    );
    tracing::info!(
        stock = snapshot.stock,
        users = snapshot.users.len(),
        "coupon gate rebuilt from the database"
    );
    coupons.gate.load(&snapshot).await?;
    Ok(())
}
