//! The catalog context: products, options and their stock (reserve/release for the order saga).
//! Lands with the order-saga issue; the crate exists so the workspace shows every context.
