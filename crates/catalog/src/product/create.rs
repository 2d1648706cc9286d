//! Creating a product with its options.

use chrono::Utc;
use db::{on_tx, sqlx};

use super::{find, NewProduct, Product};
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
        if option.price < 0 {
            return invalid("options.price", "must be at least 0");
        }
        if option.stock < 0 {
            return invalid("options.stock", "must be at least 0");
        }
    }
    Ok(())
}

/// Stores a product and its options; returns it as clients see it.
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
    for option in &new.options {
        db::exec!(
            tx,
            "INSERT INTO product_options (product_id, name, price, stock) VALUES ($1, $2, $3, $4)",
            id,
            option.name.trim(),
            option.price,
            option.stock
        )?;
    }
    tx.commit().await?;
    find(catalog, id).await
}
