//! Restoring the coupon an order used (the undo of `use_for_order.rs`).

use db::{exec, Tx};

/// Makes the coupon used by `order_id` available again, in `tx`. Idempotent: returns whether a
/// coupon was restored, and a second call (or an order without a coupon) restores nothing —
/// even if the coupon has since been used by another order.
pub async fn restore_for_order(tx: &mut Tx, order_id: i64) -> sqlx::Result<bool> {
    let restored = exec!(
        tx,
        "UPDATE user_coupons SET status = 'AVAILABLE', order_id = NULL, used_at = NULL \
         WHERE order_id = $1 AND status = 'USED'",
        order_id
    )?;
    Ok(restored > 0)
}
