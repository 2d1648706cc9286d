//! The coupons context: coupon definitions, first-come issuance and user coupons.
//! Lands with the coupon issue; the crate exists so the workspace shows every context.
