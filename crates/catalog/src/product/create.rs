//! Creating a product with its options.

use chrono::Utc;
use db::{on_tx, sqlx};

use super::{NewProduct, Product, ProductOption, MAX_PRICE, MAX_STOCK};
use crate::{Catalog, CatalogError};

fn validate(product: &NewProduct) -> Result<(), CatalogError> {
    let invalid = |field, message| Err(CatalogError::Invalid { field, message });
    let length = |s: &str| s.trim().chars().count();
    if !(1..=30).contains(&length(&product.name)) {
        return invalid("name", "must be 1 to 30 characters");
    }
    if !(1..=30).contains(&length(&product.category)) {
        return invalid("category", "must be 1 to 30 characters");
    }
    if !(10..=200).contains(&length(&product.description)) {
        return invalid("description", "must be 10 to 200 characters");
    }
    if !(1..=100).contains(&product.options.len()) {
        return invalid("options", "a product has 1 to 100 options");
    }
    for option in &product.options {
        if !(1..=30).contains(&length(&option.name)) {
            return invalid("options.name", "must be 1 to 30 characters");
        }
        if !(0..=MAX_PRICE).contains(&option.price) {
            return invalid("options.price", "must be 0 to 1,000,000,000");
        }
        if !(0..=MAX_STOCK).contains(&option.stock) {
            return invalid("options.stock", "must be 0 to 1,000,000,000");
        }
    }
    Ok(())
}

/// Stores a product and its options; returns it as clients see it (as stored, without reading
/// it back).
pub async fn create(catalog: &Catalog, new: NewProduct) -> Result<Product, CatalogError> {
    validate(&new)?;
    let mut tx = catalog.db.begin().await?;
    let id: i64 = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO products (name, category, description, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(new.name.trim())
    .bind(new.category.trim())
    .bind(new.description.trim())
    .bind(Utc::now())
    .fetch_one(c)
    .await)?;
    let mut options = Vec::with_capacity(new.options.len());
    for option in &new.options {
        let name = option.name.trim();
        let option_id: i64 = on_tx!(tx, c => sqlx::query_scalar(
            "INSERT INTO product_options (product_id, name, price, stock) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(id)
        .bind(name)
        .bind(option.price)
        .bind(option.stock)
        .fetch_one(c)
        .await)?;
        options.push(ProductOption {
            id: option_id,
            name: name.to_owned(),
            price: option.price,
            stock: option.stock,
            sold_out: option.stock == 0,
        });
    }
    tx.commit().await?;
    Ok(Product {
        id,
        name: new.name.trim().to_owned(),
        category: new.category.trim().to_owned(),
        description: new.description.trim().to_owned(),
        sold_out: options.iter().all(|o| o.sold_out),
        options,
    })
}
