//! Stock for the order saga: reserve an order's items (all or nothing) and release them.

mod release;
mod reserve;

use serde::{Deserialize, Serialize};

pub use release::release;
pub use reserve::{reserve, ReserveError};

/// One line of an order to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub product_option_id: i64,
    pub quantity: i64,
}

/// A reserved line, with what the order needs to price and show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reserved {
    pub product_option_id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub option_name: String,
    pub unit_price: i64,
    pub quantity: i64,
}
