//! The catalog's use cases on SQLite and memory, and on PostgreSQL and Redis when
//! `STAMPEDE_TEST_DATABASE_URL` / `STAMPEDE_TEST_CACHE_URL` are set.

use events::{
    order::{OrderCancelled, OrderCreated, SagaFailure, StockDecreaseFailed, StockDecreased},
    Envelope, Event,
};
use futures::future::join_all;
use testkit::handle;

use super::*;
use crate::stock::{Line, ReserveError};

struct Fixture {
    catalog: Catalog,
    context: testkit::Context,
}

async fn fixture(adapters: testkit::Adapters) -> Option<Fixture> {
    let context = testkit::context(adapters).await?;
    Some(Fixture {
        catalog: Catalog::new(context.db.clone(), context.cache.clone()),
        context,
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

/// The product as clients read it (from the cache once read), checked against the database:
/// a committed stock change has already dropped the stale entry.
async fn served(catalog: &Catalog, id: i64) -> Product {
    let served = product::find(catalog, id).await.unwrap();
    assert_eq!(
        served,
        stored(catalog, id).await,
        "the cache serves what is stored"
    );
    served
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
    assert_eq!(served(catalog, product.id).await.options[0].stock, 5);
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
    let full = new_product(catalog, &[product::MAX_STOCK]).await;
    assert!(matches!(
        product::restock(catalog, full.options[0].id, 1).await,
        Err(CatalogError::StockLimit)
    ));
    let second = new_product(catalog, &[1]).await;
    let page = product::list(&catalog.db, 0, 1).await.unwrap();
    assert_eq!(
        (page.total, page.items.len(), page.items[0].id),
        (3, 1, product.id)
    );
    assert_eq!(
        product::list(&catalog.db, 2, 1).await.unwrap().items[0].id,
        second.id
    );
    assert!(product::list(&catalog.db, 0, 101).await.is_err());
}

async fn two_hundred_orders_for_fifty_units_reserve_exactly_fifty(f: Fixture) {
    let catalog = &f.catalog;
    let product = new_product(catalog, &[50]).await;
    let option = product.options[0].id;
    assert!(!served(catalog, product.id).await.sold_out, "now cached");
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
    assert!(served(catalog, product.id).await.sold_out);
}

async fn an_order_reserves_all_its_lines_or_none_and_releases_them_once(f: Fixture) {
    let catalog = &f.catalog;
    let product = new_product(catalog, &[5, 1]).await;
    let (a, b) = (product.options[0].id, product.options[1].id);
    let failed = reserve(catalog, 1, vec![(a, 2), (b, 2)]).await;
    assert!(matches!(failed, Err(ReserveError::OutOfStock(o)) if o == b));
    assert!(matches!(
        reserve(catalog, 5, vec![(999_999, 1)]).await,
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
    assert_eq!(
        stocks(served(catalog, product.id).await),
        vec![3, 0],
        "now cached"
    );

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
    assert_eq!(served(catalog, product.id).await.options[1].stock, 1);
    assert!(matches!(
        reserve(catalog, 2, vec![(a, 1)]).await,
        Err(ReserveError::Closed)
    ));
    assert_eq!(release(catalog, 4).await, 0);
    assert!(
        matches!(
            reserve(catalog, 4, vec![(a, 1)]).await,
            Err(ReserveError::Closed)
        ),
        "an order released before its reserve never takes stock"
    );
    assert!(matches!(
        reserve(catalog, 1, vec![(a, 1)]).await,
        Err(ReserveError::AlreadyFailed)
    ));
    assert_eq!(stocks(stored(catalog, product.id).await), vec![5, 1]);
}

fn created(order: i64, option: i64, quantity: i64) -> Envelope {
    let event = OrderCreated {
        order_id: order,
        user_id: 7,
        items: vec![Line {
            product_option_id: option,
            quantity,
        }],
        user_coupon_id: Some(3),
    };
    Envelope::new(&event)
}

async fn orders_reserve_on_creation_and_release_on_cancellation_even_if_it_comes_first(f: Fixture) {
    let catalog = &f.catalog;
    let handlers = catalog.handlers(&f.context.bus);
    let (reserve, release) = (handlers[0].as_ref(), handlers[1].as_ref());
    let product = new_product(catalog, &[5]).await;
    let option = product.options[0].id;
    let stock = || async { stored(catalog, product.id).await.options[0].stock };

    let out = handle(&catalog.db, reserve, created(1, option, 2)).await;
    assert_eq!(out[0].event_type, StockDecreased::TYPE);
    let decreased: StockDecreased = out[0].decode().unwrap();
    assert_eq!(
        (decreased.items[0].unit_price, decreased.items[0].quantity),
        (89_000, 2)
    );
    assert_eq!(decreased.user_coupon_id, Some(3));
    assert_eq!(stock().await, 3);

    let too_many = handle(&catalog.db, reserve, created(2, option, 4)).await;
    let failed: StockDecreaseFailed = too_many[0].decode().unwrap();
    assert_eq!(
        (failed.reason, failed.product_option_id),
        (SagaFailure::OutOfStock, Some(option))
    );

    let cancel = |order| Envelope::new(&OrderCancelled { order_id: order });
    handle(&catalog.db, release, cancel(3)).await;
    let late = handle(&catalog.db, reserve, created(3, option, 1)).await;
    assert_eq!(
        late[0].decode::<StockDecreaseFailed>().unwrap().reason,
        SagaFailure::Cancelled
    );
    assert_eq!(stock().await, 3, "a cancelled order never takes stock");

    handle(&catalog.db, release, cancel(1)).await;
    handle(&catalog.db, release, cancel(1)).await;
    assert_eq!(stock().await, 5, "released once");
}

testkit::on_both_adapter_sets!(
    fixture;
    products_are_created_listed_restocked_and_cached_correctly,
    two_hundred_orders_for_fifty_units_reserve_exactly_fifty,
    an_order_reserves_all_its_lines_or_none_and_releases_them_once,
    orders_reserve_on_creation_and_release_on_cancellation_even_if_it_comes_first,
);
