//! The catalog's use cases on SQLite and memory, and on PostgreSQL and Redis when
//! `STAMPEDE_TEST_DATABASE_URL` / `STAMPEDE_TEST_CACHE_URL` are set.

use std::time::Duration;

use db::Db;
use futures::future::join_all;

use super::*;
use crate::stock::{Line, ReserveError};

struct Fixture {
    catalog: Catalog,
    _dir: tempfile::TempDir,
}

async fn fixture(production: bool) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let (db, cache) = if production {
        let (Ok(db_url), Ok(cache_url)) = (
            std::env::var("STAMPEDE_TEST_DATABASE_URL"),
            std::env::var("STAMPEDE_TEST_CACHE_URL"),
        ) else {
            eprintln!("skipped: STAMPEDE_TEST_DATABASE_URL / STAMPEDE_TEST_CACHE_URL not set");
            return None;
        };
        let namespace = format!("t_{}", uuid::Uuid::now_v7().simple());
        let db = Db::connect(&db_url, Some(&namespace)).await.unwrap();
        let cache = Cache::connect(&cache_url, &format!("{namespace}:"))
            .await
            .unwrap();
        (db, cache)
    } else {
        let url = format!("sqlite://{}/c.db", dir.path().display());
        (
            Db::connect(&url, None).await.unwrap(),
            Cache::connect("memory://", "").await.unwrap(),
        )
    };
    db.migrate().await.unwrap();
    Some(Fixture {
        catalog: Catalog::new(db, cache),
        _dir: dir,
    })
}

async fn new_product(catalog: &Catalog, stocks: &[i64]) -> Product {
    product::create(
        catalog,
        NewProduct {
            name: "Air runner".into(),
            category: "shoes".into(),
            description: "light running shoes".into(),
            options: stocks
                .iter()
                .enumerate()
                .map(|(i, stock)| NewOption {
                    name: format!("size {}", 250 + i * 5),
                    price: 89_000,
                    stock: *stock,
                })
                .collect(),
        },
    )
    .await
    .unwrap()
}

async fn reserve(
    catalog: &Catalog,
    order: i64,
    lines: Vec<(i64, i64)>,
) -> Result<Vec<stock::Reserved>, ReserveError> {
    let lines: Vec<Line> = lines
        .iter()
        .map(|&(product_option_id, quantity)| Line {
            product_option_id,
            quantity,
        })
        .collect();
    let mut tx = catalog.db.begin().await?;
    let reserved = stock::reserve(catalog, &mut tx, order, &lines).await;
    tx.commit().await?;
    reserved
}

async fn release(catalog: &Catalog, order: i64) -> i64 {
    let mut tx = catalog.db.begin().await.unwrap();
    let released = stock::release(catalog, &mut tx, order).await.unwrap();
    tx.commit().await.unwrap();
    released
}

/// The product as stored (bypassing the cache).
async fn stored(catalog: &Catalog, id: i64) -> Product {
    product::find::load(&catalog.db, &[id])
        .await
        .unwrap()
        .pop()
        .unwrap()
}

/// Waits until the cached product agrees with the database (the cache entry is dropped after
/// commit, asynchronously).
async fn cache_catches_up(catalog: &Catalog, id: i64) -> Product {
    let expected = stored(catalog, id).await;
    for _ in 0..100 {
        let cached = product::find(catalog, id).await.unwrap();
        if cached == expected {
            return cached;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cached product never caught up with {expected:?}");
}

async fn products_are_created_listed_restocked_and_cached_correctly(f: Fixture) {
    let catalog = &f.catalog;
    let product = new_product(catalog, &[0, 3]).await;
    assert!(!product.sold_out);
    assert!(product.options[0].sold_out);
    assert_eq!(
        product::find(catalog, product.id).await.unwrap(),
        product,
        "cached as read"
    );
    let option = product::restock(catalog, product.options[0].id, 5)
        .await
        .unwrap();
    assert_eq!((option.stock, option.sold_out), (5, false));
    assert_eq!(
        cache_catches_up(catalog, product.id).await.options[0].stock,
        5
    );
    assert!(matches!(
        product::restock(catalog, 999_999, 5).await,
        Err(CatalogError::NotFound)
    ));
    assert!(matches!(
        product::restock(catalog, option.id, 0).await,
        Err(CatalogError::Invalid {
            field: "quantity",
            ..
        })
    ));
    let second = new_product(catalog, &[1]).await;
    let page = product::list(&catalog.db, 0, 1).await.unwrap();
    assert_eq!(
        (page.total, page.items.len(), page.items[0].id),
        (2, 1, product.id)
    );
    assert_eq!(
        product::list(&catalog.db, 1, 1).await.unwrap().items[0].id,
        second.id
    );
    assert!(product::list(&catalog.db, 0, 101).await.is_err());
}

async fn two_hundred_orders_for_fifty_units_reserve_exactly_fifty(f: Fixture) {
    let catalog = &f.catalog;
    let product = new_product(catalog, &[50]).await;
    let option = product.options[0].id;
    let results = join_all((1..=200).map(|order| reserve(catalog, order, vec![(option, 1)]))).await;
    let reserved = results.iter().filter(|r| r.is_ok()).count();
    let out = results
        .iter()
        .filter(|r| matches!(r, Err(ReserveError::OutOfStock(o)) if *o == option))
        .count();
    assert_eq!((reserved, out), (50, 150));
    let now = stored(catalog, product.id).await;
    assert_eq!(now.options[0].stock, 0);
    assert!(now.sold_out);
    assert!(cache_catches_up(catalog, product.id).await.sold_out);
}

async fn an_order_reserves_all_its_lines_or_none_and_releases_them_once(f: Fixture) {
    let catalog = &f.catalog;
    let product = new_product(catalog, &[5, 1]).await;
    let (a, b) = (product.options[0].id, product.options[1].id);
    let failed = reserve(catalog, 1, vec![(a, 2), (b, 2)]).await;
    assert!(matches!(failed, Err(ReserveError::OutOfStock(o)) if o == b));
    assert!(matches!(
        reserve(catalog, 1, vec![(999_999, 1)]).await,
        Err(ReserveError::UnknownOption(999_999))
    ));
    let stocks = |p: Product| p.options.iter().map(|o| o.stock).collect::<Vec<_>>();
    assert_eq!(
        stocks(stored(catalog, product.id).await),
        vec![5, 1],
        "nothing taken"
    );

    let held = reserve(catalog, 2, vec![(b, 1), (a, 2)]).await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(
        (
            held[0].product_option_id,
            held[0].unit_price,
            held[0].product_name.as_str()
        ),
        (a, 89_000, "Air runner")
    );
    assert_eq!(
        reserve(catalog, 2, vec![(b, 1), (a, 2)]).await.unwrap(),
        held,
        "reserving again takes nothing"
    );
    assert_eq!(stocks(stored(catalog, product.id).await), vec![3, 0]);

    let releases = join_all((0..5).map(|_| release(catalog, 2))).await;
    assert_eq!(
        releases.iter().sum::<i64>(),
        3,
        "released once, however often asked"
    );
    assert_eq!(
        release(catalog, 3).await,
        0,
        "an order that reserved nothing releases nothing"
    );
    assert_eq!(stocks(stored(catalog, product.id).await), vec![5, 1]);
    assert_eq!(
        cache_catches_up(catalog, product.id).await.options[1].stock,
        1
    );
}

macro_rules! on_both_adapter_sets {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::fixture(false).await.unwrap()).await
            })*
        }
        mod production {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(f) = super::fixture(true).await {
                    super::$test(f).await
                }
            })*
        }
    };
}

on_both_adapter_sets!(
    products_are_created_listed_restocked_and_cached_correctly,
    two_hundred_orders_for_fifty_units_reserve_exactly_fifty,
    an_order_reserves_all_its_lines_or_none_and_releases_them_once,
);
