//! Reading products: detail (cached) and pages of the list.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSummary {
    pub id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub option_name: String,
    pub price: i64,
}

type ProductRow = (i64, String, String, String);
type OptionRow = (i64, i64, String, i64, i64);

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
        "SELECT product_id, id, name, price, stock FROM product_options WHERE product_id IN ({list}) ORDER BY id"
    ))
    .fetch_all(c)
    .await)?;
    Ok(products
        .into_iter()
        .map(|(id, name, category, description)| {
            let options: Vec<ProductOption> = options
                .iter()
                .filter(|o| o.0 == id)
                .map(|(_, option_id, name, price, stock)| ProductOption {
                    id: *option_id,
                    name: name.clone(),
                    price: *price,
                    stock: *stock,
                    sold_out: *stock == 0,
                })
                .collect();
            Product {
                id,
                name,
                category,
                description,
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
    let rows: Vec<(i64, i64, String, String, i64)> = on_db!(db, c => sqlx::query_as(&format!(
        "SELECT o.id, o.product_id, p.name, o.name, o.price FROM product_options o \
         JOIN products p ON p.id = o.product_id WHERE o.id IN ({list}) ORDER BY o.id"
    ))
    .fetch_all(c)
    .await)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, product_id, product_name, option_name, price)| OptionSummary {
                id,
                product_id,
                product_name,
                option_name,
                price,
            },
        )
        .collect())
}

/// A product as listings name it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let rows: Vec<(i64, String, String)> = on_db!(db, c => sqlx::query_as(&format!(
        "SELECT id, name, category FROM products WHERE id IN ({list}) ORDER BY id"
    ))
    .fetch_all(c)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, category)| ProductName { id, name, category })
        .collect())
}
