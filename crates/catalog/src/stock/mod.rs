//! Stock for the order saga: reserve an order's items (all or nothing) and release them.
//! Lines come and go in the saga's own vocabulary (`events::order`).

mod release;
mod reserve;

pub use events::order::{OrderLine as Line, ReservedLine as Reserved};
pub use release::release;
pub use reserve::{reserve, ReserveError};
