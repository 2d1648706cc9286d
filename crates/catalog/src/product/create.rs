//! Creating a product with its options.

use chrono::Utc;
use db::{on_tx, sqlx, text::fits};

use super::{NewProduct, Product, ProductOption, MAX_PRICE, MAX_STOCK};
use crate::{Catalog, CatalogError};

fn validate(product: &NewProduct) -> Result<(), CatalogError> {
    let invalid = |field, message| Err(CatalogError::Invalid { field, message });
    if !fits(&product.name, 1, 30) {
        return invalid("name", "must be 1 to 30 characters, not all blank");
    }
    if !fits(&product.category, 1, 30) {
        return invalid("category", "must be 1 to 30 characters, not all blank");
    }
    if !fits(&product.description, 10, 200) {
        return invalid("description", "must be 10 to 200 characters, not all blank");
    }
    if !(1..=100).contains(&product.options.len()) {
        return invalid("options", "a product has 1 to 100 options");
    }
    for option in &product.options {
        if !fits(&option.name, 1, 30) {
            return invalid("options.name", "must be 1 to 30 characters, not all blank");
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
    .bind(&new.name)
    .bind(&new.category)
    .bind(&new.description)
    .bind(Utc::now())
    .fetch_one(c)
    .await)?;
    let mut options = Vec::with_capacity(new.options.len());
    for option in new.options {
        let option_id: i64 = on_tx!(tx, c => sqlx::query_scalar(
            "INSERT INTO product_options (product_id, name, price, stock) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(id)
        .bind(&option.name)
        .bind(option.price)
        .bind(option.stock)
        .fetch_one(c)
        .await)?;
        options.push(ProductOption {
            id: option_id,
            name: option.name,
            price: option.price,
            stock: option.stock,
            sold_out: option.stock == 0,
        });
    }
    tx.commit().await?;
    Ok(Product {
        id,
        name: new.name,
        category: new.category,
        description: new.description,
        sold_out: options.iter().all(|o| o.sold_out),
        options,
    })
}
