//! Reading products: detail (cached) and pages of the list.

use std::collections::HashMap;

use db::{on_db, sqlx, Db};
use serde::Serialize;
use utoipa::ToSchema;

use super::{cache_key, Product, ProductOption};
use crate::{Catalog, CatalogError, PRODUCT_TTL};

/// A page of products, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub page: i64,
    pub size: i64,
    pub total: i64,
}

/// An option as an order line names and prices it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OptionSummary {
    pub id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub option_name: String,
    pub price: i64,
}

/// A `products` row.
#[derive(sqlx::FromRow)]
struct ProductRow {
    id: i64,
    name: String,
    category: String,
    description: String,
}

/// A `product_options` row ([`OPTION_COLUMNS`]).
#[derive(sqlx::FromRow)]
pub(crate) struct OptionRow {
    pub(crate) product_id: i64,
    id: i64,
    name: String,
    price: i64,
    stock: i64,
}

pub(crate) const OPTION_COLUMNS: &str = "product_id, id, name, price, stock";

impl From<OptionRow> for ProductOption {
    fn from(row: OptionRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            price: row.price,
            sold_out: row.stock == 0,
            stock: row.stock,
        }
    }
}

/// The product `id` with its options' live stock, from the cache when it has it.
pub async fn find(catalog: &Catalog, id: i64) -> Result<Product, CatalogError> {
    let key = cache_key(id);
    match catalog.cache.get(&key).await {
        Ok(Some(json)) => {
            if let Ok(product) = serde_json::from_str(&json) {
                return Ok(product);
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(
            error = format!("{error:#}"),
            "product cache unavailable; reading the database"
        ),
    }
    let product = load(&catalog.db, &[id])
        .await?
        .pop()
        .ok_or(CatalogError::NotFound)?;
    let json = serde_json::to_string(&product).map_err(anyhow::Error::from)?;
    if let Err(error) = catalog.cache.set(&key, &json, Some(PRODUCT_TTL)).await {
        tracing::warn!(error = format!("{error:#}"), "caching a product failed");
    }
    Ok(product)
}

/// The product `id` as the database has it now, never a cached copy: for decisions that must
/// not lag behind the stock, such as closing a waiting room.
pub async fn current(db: &Db, id: i64) -> Result<Product, CatalogError> {
    load(db, &[id]).await?.pop().ok_or(CatalogError::NotFound)
}

/// Page `page` (from 0) of `size` products, by id.
pub async fn list(db: &Db, page: i64, size: i64) -> Result<ProductPage, CatalogError> {
    if page < 0 {
        return Err(CatalogError::Invalid {
            field: "page",
            message: "must be at least 0",
        });
    }
    if !(1..=100).contains(&size) {
        return Err(CatalogError::Invalid {
            field: "size",
            message: "must be 1 to 100",
        });
    }
    let total: i64 =
        on_db!(db, c => sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(c).await)?;
    let ids: Vec<i64> = on_db!(db, c => sqlx::query_scalar("SELECT id FROM products ORDER BY id LIMIT $1 OFFSET $2")
        .bind(size)
        .bind(page.saturating_mul(size))
        .fetch_all(c)
        .await)?;
    Ok(ProductPage {
        items: load(db, &ids).await?,
        page,
        size,
        total,
    })
}

/// The products `ids` (those that exist, by id) with their options, in two queries.
pub(crate) async fn load(db: &Db, ids: &[i64]) -> Result<Vec<Product>, CatalogError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = db::id_list(ids.iter().copied());
    let products: Vec<ProductRow> = on_db!(db, c => sqlx::query_as(&format!(
        "SELECT id, name, category, description FROM products WHERE id IN ({list}) ORDER BY id"
    ))
    .fetch_all(c)
    .await)?;
    let options: Vec<OptionRow> = on_db!(db, c => sqlx::query_as(&format!(
        "SELECT {OPTION_COLUMNS} FROM product_options WHERE product_id IN ({list}) ORDER BY id"
    ))
    .fetch_all(c)
    .await)?;
    let mut by_product: HashMap<i64, Vec<ProductOption>> = HashMap::new();
    for option in options {
        by_product
            .entry(option.product_id)
            .or_default()
            .push(option.into());
    }
    Ok(products
        .into_iter()
        .map(|product| {
            let options = by_product.remove(&product.id).unwrap_or_default();
            Product {
                id: product.id,
                name: product.name,
                category: product.category,
                description: product.description,
                sold_out: options.iter().all(|o| o.sold_out),
                options,
            }
        })
        .collect())
}

/// The options `ids` that exist, with their product's name, in one query.
pub async fn options(db: &Db, ids: &[i64]) -> Result<Vec<OptionSummary>, CatalogError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = db::id_list(ids.iter().copied());
    Ok(on_db!(db, c => sqlx::query_as(&format!(
        "SELECT o.id, o.product_id, p.name AS product_name, o.name AS option_name, o.price \
         FROM product_options o JOIN products p ON p.id = o.product_id \
         WHERE o.id IN ({list}) ORDER BY o.id"
    ))
    .fetch_all(c)
    .await)?)
}

/// A product as listings name it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProductName {
    pub id: i64,
    pub name: String,
    pub category: String,
}

/// The names and categories of the products `ids` that exist, by id, in one query.
pub async fn names(db: &Db, ids: &[i64]) -> Result<Vec<ProductName>, CatalogError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = db::id_list(ids.iter().copied());
    Ok(on_db!(db, c => sqlx::query_as(&format!(
        "SELECT id, name, category FROM products WHERE id IN ({list}) ORDER BY id"
    ))
    .fetch_all(c)
    .await)?)
}
