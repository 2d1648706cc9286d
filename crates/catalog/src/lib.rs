//! The catalog context: products, their options and the options' live stock.
//!
//! Stock changes only through conditional statements (`UPDATE … SET stock = stock - $q WHERE
//! stock >= $q`, backed by `CHECK (stock >= 0)`), so no concurrency oversells. The order saga
//! reserves stock per order all or nothing ([`stock::reserve`]) and releases it at most once
//! ([`stock::release`]); `stock_reservations` records what each order holds.
//!
//! Product detail is served from the cache after the first read; every stock change drops the
//! product's entry once its transaction has committed.

use std::time::Duration;

use cache::Cache;
use db::{Db, Tx};

pub mod product;
pub mod saga;
pub mod stock;

#[cfg(test)]
mod tests;

pub use product::{NewOption, NewProduct, Product, ProductOption, ProductPage};

/// Why a catalog operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("not found")]
    NotFound,
    /// An order names a product option that does not exist.
    #[error("no product option {0}")]
    UnknownOption(i64),
    /// A restock would take the stock past [`product::MAX_STOCK`].
    #[error("the stock would pass its maximum")]
    StockLimit,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unknown(e.into())
    }
}

/// How long a cached product may live even without a stock change (a safety net against a
/// read that raced a change).
const PRODUCT_TTL: Duration = Duration::from_secs(30);

/// The catalog of one process: its database and cache. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    db: Db,
    cache: Cache,
}

impl Catalog {
    pub fn new(db: Db, cache: Cache) -> Self {
        Self { db, cache }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Drops the cached products `ids` when `tx` commits (the commit returns once they are
    /// gone), and again a moment later, in case a reader that loaded the old row stored it in
    /// between.
    fn forget_after_commit(&self, tx: &mut Tx, ids: Vec<i64>) {
        let cache = self.cache.clone();
        tx.on_commit(async move {
            forget(&cache, &ids).await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                forget(&cache, &ids).await;
            });
        });
    }
}

async fn forget(cache: &Cache, ids: &[i64]) {
    for id in ids {
        if let Err(error) = cache.delete(&product::cache_key(*id)).await {
            tracing::warn!(
                product_id = id,
                error = format!("{error:#}"),
                "dropping a cached product failed"
            );
        }
    }
}
