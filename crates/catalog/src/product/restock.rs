//! Restocking an option.

use db::{on_tx, sqlx};

use super::{
    find::{OptionRow, OPTION_COLUMNS},
    ProductOption, MAX_STOCK,
};
use crate::{Catalog, CatalogError};

/// Adds `quantity` (1 to 1,000,000) to the stock of option `option_id` in one atomic update;
/// returns the option. Refused (`StockLimit`) when the stock would pass [`MAX_STOCK`]: stock released by cancelled orders lands on top of a bounded value, so it
/// cannot overflow.
pub async fn restock(
    catalog: &Catalog,
    option_id: i64,
    quantity: i64,
) -> Result<ProductOption, CatalogError> {
    if !(1..=1_000_000).contains(&quantity) {
        return Err(CatalogError::Invalid {
            field: "quantity",
            message: "must be 1 to 1,000,000",
        });
    }
    let mut tx = catalog.db.begin().await?;
    let row: Option<OptionRow> = on_tx!(tx, c => sqlx::query_as(&format!(
        "UPDATE product_options SET stock = stock + $2 WHERE id = $1 AND stock <= $3 - $2 \
         RETURNING {OPTION_COLUMNS}"
    ))
    .bind(option_id)
    .bind(quantity)
    .bind(MAX_STOCK)
    .fetch_optional(c)
    .await)?;
    let Some(option) = row else {
        let exists: Option<i64> = on_tx!(tx, c => sqlx::query_scalar(
            "SELECT id FROM product_options WHERE id = $1",
        )
        .bind(option_id)
        .fetch_optional(c)
        .await)?;
        return Err(match exists {
            Some(_) => CatalogError::StockLimit,
            None => CatalogError::NotFound,
        });
    };
    catalog.forget_after_commit(&mut tx, vec![option.product_id]);
    tx.commit().await?;
    Ok(option.into())
}
