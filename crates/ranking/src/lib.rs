//! The ranking context: per-day sales sorted sets and the popular-products query.
//! Lands with the ranking issue; the crate exists so the workspace shows every context.
