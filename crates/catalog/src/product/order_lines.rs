//! The lines of an order as the catalog describes them when it is placed: product and option
//! names and the current unit price, for options that exist.

use db::Db;
use events::order::ReservedLine;

use super::options;
use crate::CatalogError;

/// `(option, quantity)` pairs as order lines, in the order given, read in one query.
/// `UnknownOption` names the first option that does not exist.
pub async fn order_lines(
    db: &Db,
    wanted: &[(i64, i64)],
) -> Result<Vec<ReservedLine>, CatalogError> {
    let ids: Vec<i64> = wanted.iter().map(|(option, _)| *option).collect();
    let known = options(db, &ids).await?;
    wanted
        .iter()
        .map(|&(id, quantity)| {
            let option = known
                .iter()
                .find(|o| o.id == id)
                .ok_or(CatalogError::UnknownOption(id))?;
            Ok(ReservedLine {
                product_option_id: option.id,
                product_id: option.product_id,
                product_name: option.product_name.clone(),
                option_name: option.option_name.clone(),
                unit_price: option.price,
                quantity,
            })
        })
        .collect()
}
