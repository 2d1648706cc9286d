//! The ranking's counts and queries on the embedded adapters, and on PostgreSQL and Redis
//! when `STAMPEDE_TEST_DATABASE_URL` / `STAMPEDE_TEST_CACHE_URL` are set. Sales arrive as the
//! `product-sold` events orders writes; rebuilding from paid orders is tested over HTTP,
//! where orders are really paid.

use std::time::Duration;

use catalog::{Catalog, NewOption, NewProduct};
use chrono::{DateTime, TimeZone as _, Utc};
use events::{order::ProductSold, Envelope};
use testkit::handle;

use super::*;
use crate::{popular::popular_json, record::RecordSale};

struct Fixture {
    ranking: Ranking,
    catalog: Catalog,
    _context: testkit::Context,
}

async fn fixture(adapters: testkit::Adapters) -> Option<Fixture> {
    let context = testkit::context(adapters).await?;
    let settings = RankingSettings {
        answer_ttl: Duration::ZERO,
        ..RankingSettings::default()
    };
    Some(Fixture {
        ranking: Ranking::new(context.db.clone(), &context.cache, settings),
        catalog: Catalog::new(context.db.clone(), context.cache.clone()),
        _context: context,
    })
}

impl Fixture {
    /// A new product; its id.
    async fn product(&self, name: &str) -> i64 {
        catalog::product::create(
            &self.catalog,
            NewProduct {
                name: name.into(),
                category: "shoes".into(),
                description: "shoes to rank".into(),
                options: vec![NewOption {
                    name: "one size".into(),
                    price: 1_000,
                    stock: 100,
                }],
            },
        )
        .await
        .unwrap()
        .id
    }

    /// Delivers a `product-sold` for line `(order, option)` through the consumer.
    async fn sold(&self, order: i64, option: i64, product: i64, quantity: i64, at: DateTime<Utc>) {
        let event = Envelope::new(&ProductSold {
            order_id: order,
            product_option_id: option,
            product_id: product,
            quantity,
            sold_at: at,
        });
        self.deliver(event).await;
    }

    async fn deliver(&self, event: Envelope) {
        let consumer = RecordSale::new(self.ranking.clone());
        handle(&self.ranking.db, &consumer, event).await;
    }

    /// `(productId, soldQuantity)` best first.
    async fn top(&self, days: i64, limit: i64) -> Vec<(i64, i64)> {
        popular::popular(&self.ranking, days, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.product_id, p.sold_quantity))
            .collect()
    }
}

async fn sales_rank_by_units_with_ties_by_product_id(f: Fixture) {
    let now = Utc::now();
    let (a, b, c) = (
        f.product("A").await,
        f.product("B").await,
        f.product("C").await,
    );
    f.sold(1, 11, c, 4, now).await;
    f.sold(2, 12, a, 2, now).await;
    f.sold(3, 13, b, 1, now).await;
    f.sold(4, 14, a, 2, now).await;
    assert_eq!(f.top(3, 5).await, [(a, 4), (c, 4), (b, 1)]);
    assert_eq!(f.top(3, 2).await, [(a, 4), (c, 4)]);
    let first = &popular::popular(&f.ranking, 3, 1).await.unwrap()[0];
    assert_eq!(
        (first.rank, first.name.as_str(), first.category.as_str()),
        (1, "A", "shoes")
    );
}

async fn a_sale_delivered_twice_counts_once(f: Fixture) {
    let product = f.product("A").await;
    let event = Envelope::new(&ProductSold {
        order_id: 7,
        product_option_id: 70,
        product_id: product,
        quantity: 3,
        sold_at: Utc::now(),
    });
    f.deliver(event.clone()).await;
    f.deliver(event.clone()).await;
    // The same line again under a new event id (written twice by a retried transaction).
    let mut again = event;
    again.id = uuid::Uuid::now_v7();
    f.deliver(again).await;
    // Another line of the same order counts.
    f.sold(7, 71, product, 1, Utc::now()).await;
    assert_eq!(f.top(2, 5).await, [(product, 4)]);
}

async fn the_window_holds_today_and_the_days_before_it(f: Fixture) {
    let (a, b, c) = (
        f.product("A").await,
        f.product("B").await,
        f.product("C").await,
    );
    let today = f.ranking.day_of(Utc::now());
    let start = f.ranking.day_start(today);
    let days_ago = |n: u64| f.ranking.day_start(today - chrono::Days::new(n));
    f.sold(1, 1, a, 1, start).await;
    f.sold(2, 1, b, 2, start - chrono::Duration::seconds(1))
        .await;
    f.sold(3, 1, c, 5, days_ago(3) + chrono::Duration::hours(12))
        .await;
    assert_eq!(f.top(1, 5).await, [(a, 1)]);
    assert_eq!(f.top(2, 5).await, [(b, 2), (a, 1)]);
    assert_eq!(f.top(3, 5).await, [(b, 2), (a, 1)]);
    assert_eq!(f.top(4, 5).await, [(c, 5), (b, 2), (a, 1)]);
    // Past the longest window: not counted at all.
    f.sold(4, 1, a, 100, days_ago(u64::from(MAX_DAYS) + 2))
        .await;
    assert_eq!(f.top(30, 5).await, [(c, 5), (b, 2), (a, 1)]);
}

async fn an_answer_is_kept_for_its_time_then_made_again(f: Fixture) {
    // The same counts, answers kept for 300 ms.
    let keeping = Ranking {
        settings: RankingSettings {
            answer_ttl: Duration::from_millis(300),
            ..f.ranking.settings.clone()
        },
        ..f.ranking.clone()
    };
    let product = f.product("A").await;
    f.sold(1, 1, product, 1, Utc::now()).await;
    let kept = popular_json(&keeping, 3, 5).await.unwrap();
    f.sold(2, 1, product, 1, Utc::now()).await;
    assert_eq!(popular_json(&keeping, 3, 5).await.unwrap(), kept);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let fresh: serde_json::Value =
        serde_json::from_slice(&popular_json(&keeping, 3, 5).await.unwrap()).unwrap();
    assert_eq!(fresh[0]["soldQuantity"], 2, "{fresh}");
}

async fn a_read_that_fails_serves_the_last_answer(f: Fixture) {
    // Answers kept for no time: every read makes one, unless making it fails.
    let product = f.product("A").await;
    f.sold(1, 1, product, 2, Utc::now()).await;
    let last = popular_json(&f.ranking, 3, 5).await.unwrap();
    f.ranking.db.close().await;
    assert!(popular::popular(&f.ranking, 3, 5).await.is_err());
    assert_eq!(popular_json(&f.ranking, 3, 5).await.unwrap(), last);
    assert!(
        popular_json(&f.ranking, 3, 4).await.is_err(),
        "no answer to fall back on"
    );
}

async fn out_of_range_queries_are_refused(f: Fixture) {
    for (days, limit, field) in [
        (0, 5, "days"),
        (31, 5, "days"),
        (3, 0, "limit"),
        (3, 101, "limit"),
    ] {
        match popular::popular(&f.ranking, days, limit).await {
            Err(RankingError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("days {days} limit {limit}: {other:?}"),
        }
    }
    assert!(popular::popular(&f.ranking, 30, 100).await.is_ok());
}

testkit::on_both_adapter_sets!(fixture;
    sales_rank_by_units_with_ties_by_product_id,
    a_sale_delivered_twice_counts_once,
    the_window_holds_today_and_the_days_before_it,
    an_answer_is_kept_for_its_time_then_made_again,
    a_read_that_fails_serves_the_last_answer,
    out_of_range_queries_are_refused,
);

#[test]
fn days_are_cut_in_the_configured_time_zone() {
    let seoul = RankingSettings::default().time_zone;
    let evening = Utc.with_ymd_and_hms(2026, 11, 23, 14, 59, 59).unwrap();
    let midnight = Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0).unwrap();
    assert_eq!(day_of(seoul, evening).to_string(), "2026-11-23");
    assert_eq!(day_of(seoul, midnight).to_string(), "2026-11-24");
    assert_eq!(day_start(seoul, day_of(seoul, midnight)), midnight);
    assert_eq!(day_of(chrono_tz::UTC, midnight).to_string(), "2026-11-23");
    // Midnight skipped by daylight saving (Santiago, 2026-09-06): the day starts at 01:00.
    let santiago: Tz = "America/Santiago".parse().unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
    assert_eq!(
        day_start(santiago, day),
        Utc.with_ymd_and_hms(2026, 9, 6, 4, 0, 0).unwrap()
    );
}
