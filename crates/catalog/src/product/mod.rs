//! Products and their options.

mod create;
pub(crate) mod find;
mod order_lines;
mod restock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use create::create;
pub use find::{current, find, list, names, options, OptionSummary, ProductName, ProductPage};
pub use order_lines::order_lines;
pub use restock::restock;

/// The highest price of an option, in KRW: an order's total (50 lines of 1,000 units) stays far
/// inside `i64`.
pub const MAX_PRICE: i64 = 1_000_000_000;
/// The most stock an option may be given, by creation or restock.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// An option of a product (a size, a colour) with its price and live stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOption {
    pub id: i64,
    pub name: String,
    pub price: i64,
    /// What can still be ordered.
    pub stock: i64,
    pub sold_out: bool,
}

/// A product as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub category: String,
    pub description: String,
    /// Every option is sold out.
    pub sold_out: bool,
    pub options: Vec<ProductOption>,
}

/// What an admin asks for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewProduct {
    /// 1 to 30 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 30,
        pattern = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$"
    )]
    pub name: String,
    /// 1 to 30 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 30,
        pattern = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$"
    )]
    pub category: String,
    /// 10 to 200 characters, not all blank.
    #[schema(
        min_length = 10,
        max_length = 200,
        pattern = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$"
    )]
    pub description: String,
    /// 1 to 100.
    #[schema(min_items = 1, max_items = 100)]
    pub options: Vec<NewOption>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewOption {
    /// 1 to 30 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 30,
        pattern = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$"
    )]
    pub name: String,
    /// 0 to 1,000,000,000 KRW.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price: i64,
    /// 0 to 1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
}

pub(crate) fn cache_key(id: i64) -> String {
    format!("product:{id}")
}
