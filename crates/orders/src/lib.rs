//! The orders context: orders, their saga state, payment and expiry.
//! Lands with the order-saga issue; the crate exists so the workspace shows every context.
