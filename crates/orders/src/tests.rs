//! The context's use cases on the embedded adapters, and on PostgreSQL when
//! `STAMPEDE_TEST_DATABASE_URL` / `STAMPEDE_TEST_CACHE_URL` are set. Catalog's and coupons'
//! replies are written here as the events they send.

use std::time::Duration;

use chrono::Utc;
use db::{on_db, sqlx};

use events::{
    order::{
        CouponDiscount, CouponUseFailed, CouponUsed, DiscountKind, ReservedLine, SagaFailure,
        StockDecreaseFailed,
    },
    topics, Envelope,
};
use testkit::handle;

use super::*;
use crate::{pay::pay, place::place, saga::OrderSaga};

struct Fixture {
    orders: Orders,
    _context: testkit::Context,
}

const WINDOW: Duration = Duration::from_secs(600);

async fn fixture(adapters: testkit::Adapters) -> Option<Fixture> {
    let context = testkit::context(adapters).await?;
    let settings = OrderSettings {
        payment_window: WINDOW,
        stuck_after: Duration::from_secs(30),
        sweep_every: Duration::from_secs(1),
        ..OrderSettings::default()
    };
    Some(Fixture {
        orders: Orders::new(
            context.db.clone(),
            context.cache.clone(),
            context.bus.clone(),
            settings,
        ),
        _context: context,
    })
}

fn line(option: i64, price: i64, quantity: i64) -> Line {
    Line {
        product_option_id: option,
        product_id: option * 10,
        product_name: format!("product {option}"),
        option_name: format!("option {option}"),
        unit_price: price,
        quantity,
    }
}

async fn new_user(orders: &Orders) -> i64 {
    points::users::sign_up(
        orders.db(),
        &points::users::Hashing::default(),
        "buyer",
        &format!("{}@x.io", uuid::Uuid::now_v7()),
        "secret1",
    )
    .await
    .unwrap()
    .id
}

async fn place_order(orders: &Orders, user: i64, lines: &[Line], coupon: Option<i64>) -> Order {
    let mut tx = orders.db().begin().await.unwrap();
    let order = place(orders, &mut tx, user, lines, coupon).await.unwrap();
    tx.commit().await.unwrap();
    order
}

/// The events with `topic` in the outbox for `order`, oldest first.
async fn outbox(orders: &Orders, topic: &str, order: i64) -> Vec<Envelope> {
    let rows: Vec<sqlx::types::Json<Envelope>> = on_db!(orders.db(), c => sqlx::query_scalar(
        "SELECT envelope FROM outbox WHERE topic = $1 ORDER BY seq",
    )
    .bind(topic)
    .fetch_all(c)
    .await)
    .unwrap();
    rows.into_iter()
        .map(|r| r.0)
        .filter(|e| e.payload["orderId"] == order)
        .collect()
}

fn coupon_used(order: &Order, discount: Option<CouponDiscount>) -> Envelope {
    let items = order
        .items
        .iter()
        .map(|i| ReservedLine {
            product_option_id: i.product_option_id,
            product_id: i.product_option_id * 10,
            product_name: i.product_name.clone(),
            option_name: i.option_name.clone(),
            unit_price: i.unit_price,
            quantity: i.quantity,
        })
        .collect();
    let used = CouponUsed {
        order_id: order.id,
        items,
        user_coupon_id: order.user_coupon_id,
        discount,
    };
    Envelope::new(&used)
}

async fn priced(f: &Fixture, order: &Order, discount: Option<CouponDiscount>) -> Order {
    let saga = OrderSaga::new(f.orders.clone());
    handle(f.orders.db(), &saga, coupon_used(order, discount)).await;
    find::find(f.orders.db(), order.id).await.unwrap()
}

async fn placing_stores_a_pending_order_and_order_created_in_one_transaction(f: Fixture) {
    let user = new_user(&f.orders).await;
    let order = place_order(
        &f.orders,
        user,
        &[line(1, 1000, 2), line(2, 500, 1)],
        Some(7),
    )
    .await;
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!((order.original_amount, order.total_amount), (0, 0));
    assert_eq!(order.items.len(), 2);
    let created = outbox(&f.orders, topics::ORDER_CREATED, order.id).await;
    assert_eq!(created.len(), 1);
    let created: events::order::OrderCreated = created[0].decode().unwrap();
    assert_eq!(created.items.len(), 2);
    assert_eq!(created.user_coupon_id, Some(7));
    let changes = find::changes(f.orders.db(), order.id, None).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].version, 1);
}

async fn coupon_used_prices_the_order_once_with_the_reserved_prices(f: Fixture) {
    let user = new_user(&f.orders).await;
    let order = place_order(&f.orders, user, &[line(1, 1000, 3)], Some(7)).await;
    let mut reserved = coupon_used(
        &order,
        Some(CouponDiscount {
            discount_type: DiscountKind::Percent,
            discount_value: 15,
        }),
    );
    // The catalog's price at reservation wins over the one seen at placing.
    reserved.payload["items"][0]["unitPrice"] = 999.into();
    let saga = OrderSaga::new(f.orders.clone());
    handle(f.orders.db(), &saga, reserved.clone()).await;
    let after = find::find(f.orders.db(), order.id).await.unwrap();
    assert_eq!(after.status, OrderStatus::AwaitingPayment);
    // 2,997 − floor(449.55)
    assert_eq!(
        (
            after.original_amount,
            after.discount_amount,
            after.total_amount
        ),
        (2997, 449, 2548)
    );
    assert_eq!(after.items[0].unit_price, 999);
    let deadline = after.payment_deadline.unwrap();
    assert!(deadline > Utc::now() + WINDOW - Duration::from_secs(60));

    // A redelivered (or re-driven) reply changes nothing.
    handle(f.orders.db(), &saga, reserved).await;
    let again = find::find(f.orders.db(), order.id).await.unwrap();
    assert_eq!(again, after);
    let changes = find::changes(f.orders.db(), order.id, Some(0))
        .await
        .unwrap();
    assert_eq!(changes.len(), 2);
}

async fn failure_replies_fail_a_pending_order_with_their_reason(f: Fixture) {
    let user = new_user(&f.orders).await;
    let saga = OrderSaga::new(f.orders.clone());
    let out_of_stock = place_order(&f.orders, user, &[line(1, 1000, 1)], None).await;
    let failed = StockDecreaseFailed {
        order_id: out_of_stock.id,
        reason: SagaFailure::OutOfStock,
        product_option_id: Some(1),
    };
    handle(f.orders.db(), &saga, Envelope::new(&failed)).await;
    let after = find::find(f.orders.db(), out_of_stock.id).await.unwrap();
    assert_eq!(after.status, OrderStatus::Failed);
    assert_eq!(after.failure_reason.as_deref(), Some("OUT_OF_STOCK"));

    let bad_coupon = place_order(&f.orders, user, &[line(1, 1000, 1)], Some(9)).await;
    let failed = CouponUseFailed {
        order_id: bad_coupon.id,
        reason: SagaFailure::CouponInvalid,
        detail: "not yours".into(),
    };
    handle(f.orders.db(), &saga, Envelope::new(&failed)).await;
    let after = find::find(f.orders.db(), bad_coupon.id).await.unwrap();
    assert_eq!(after.failure_reason.as_deref(), Some("COUPON_INVALID"));

    // `CANCELLED` answers a close that came first: the order keeps the status it was closed with.
    let cancelled = place_order(&f.orders, user, &[line(1, 1000, 1)], None).await;
    let mut tx = f.orders.db().begin().await.unwrap();
    cancel::cancel(&f.orders, &mut tx, cancelled.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let failed = StockDecreaseFailed {
        order_id: cancelled.id,
        reason: SagaFailure::Cancelled,
        product_option_id: None,
    };
    handle(f.orders.db(), &saga, Envelope::new(&failed)).await;
    let late = coupon_used(&cancelled, None);
    handle(f.orders.db(), &saga, late).await;
    let after = find::find(f.orders.db(), cancelled.id).await.unwrap();
    assert_eq!(after.status, OrderStatus::Cancelled);
    assert_eq!(after.failure_reason, None);
    assert_eq!(
        outbox(&f.orders, topics::ORDER_CANCELLED, cancelled.id)
            .await
            .len(),
        1
    );
}

async fn payment_takes_the_points_once_and_announces_the_sale(f: Fixture) {
    let user = new_user(&f.orders).await;
    let order = place_order(&f.orders, user, &[line(1, 6000, 2), line(2, 3000, 1)], None).await;
    let order = priced(&f, &order, None).await;
    assert_eq!(order.total_amount, 15000);

    let mut tx = f.orders.db().begin().await.unwrap();
    points::balance::charge(&mut tx, user, 10_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = f.orders.db().begin().await.unwrap();
    let short = pay(&f.orders, &mut tx, order.id).await;
    assert!(
        matches!(
            short,
            Err(OrderError::InsufficientPoints {
                balance: 10_000,
                needed: 15_000
            })
        ),
        "{short:?}"
    );
    tx.rollback().await.unwrap();
    let still = find::find(f.orders.db(), order.id).await.unwrap();
    assert_eq!(still.status, OrderStatus::AwaitingPayment);

    let mut tx = f.orders.db().begin().await.unwrap();
    points::balance::charge(&mut tx, user, 10_000)
        .await
        .unwrap();
    let payment = pay(&f.orders, &mut tx, order.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((payment.amount, payment.status), (15000, OrderStatus::Paid));
    assert_eq!(
        points::balance::balance(f.orders.db(), user).await.unwrap(),
        5_000
    );
    let paid = find::find(f.orders.db(), order.id).await.unwrap();
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(
        outbox(&f.orders, topics::ORDER_PAID, order.id).await.len(),
        1
    );
    let sold: Vec<events::order::ProductSold> = outbox(&f.orders, topics::PRODUCT_SOLD, order.id)
        .await
        .iter()
        .map(|e| e.decode().unwrap())
        .collect();
    assert_eq!(
        sold.iter()
            .map(|s| (s.product_id, s.quantity))
            .collect::<Vec<_>>(),
        [(10, 2), (20, 1)]
    );

    let mut tx = f.orders.db().begin().await.unwrap();
    let again = pay(&f.orders, &mut tx, order.id).await;
    assert!(
        matches!(again, Err(OrderError::NotPayable(OrderStatus::Paid))),
        "{again:?}"
    );
    drop(tx);
    assert_eq!(
        points::balance::balance(f.orders.db(), user).await.unwrap(),
        5_000
    );
}

async fn only_open_orders_cancel_and_a_pending_order_cannot_be_paid(f: Fixture) {
    let user = new_user(&f.orders).await;
    let order = place_order(&f.orders, user, &[line(1, 100, 1)], None).await;
    let mut tx = f.orders.db().begin().await.unwrap();
    assert!(matches!(
        pay(&f.orders, &mut tx, order.id).await,
        Err(OrderError::NotPayable(OrderStatus::Pending))
    ));
    drop(tx);
    let mut tx = f.orders.db().begin().await.unwrap();
    let cancelled = cancel::cancel(&f.orders, &mut tx, order.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    let mut tx = f.orders.db().begin().await.unwrap();
    assert!(matches!(
        cancel::cancel(&f.orders, &mut tx, order.id).await,
        Err(OrderError::NotCancellable(OrderStatus::Cancelled))
    ));
    assert!(matches!(
        cancel::cancel(&f.orders, &mut tx, order.id + 1000).await,
        Err(OrderError::NotFound)
    ));
}

async fn the_sweeper_expires_unpaid_and_given_up_orders_once(f: Fixture) {
    let user = new_user(&f.orders).await;
    let awaiting = place_order(&f.orders, user, &[line(1, 100, 1)], None).await;
    let awaiting = priced(&f, &awaiting, None).await;
    let pending = place_order(&f.orders, user, &[line(1, 100, 1)], None).await;

    let before_deadline = Utc::now() + WINDOW - Duration::from_secs(30);
    assert_eq!(
        sweeper::expire_due(&f.orders, before_deadline)
            .await
            .unwrap(),
        0
    );
    let after_deadline = awaiting.payment_deadline.unwrap() + Duration::from_secs(1);
    assert_eq!(
        sweeper::expire_due(&f.orders, after_deadline)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        sweeper::expire_due(&f.orders, after_deadline)
            .await
            .unwrap(),
        0
    );
    for id in [awaiting.id, pending.id] {
        let order = find::find(f.orders.db(), id).await.unwrap();
        assert_eq!(order.status, OrderStatus::Expired);
        assert_eq!(outbox(&f.orders, topics::ORDER_EXPIRED, id).await.len(), 1);
    }
}

async fn a_stuck_saga_is_re_driven_a_bounded_number_of_times(f: Fixture) {
    let user = new_user(&f.orders).await;
    let order = place_order(&f.orders, user, &[line(1, 100, 2)], Some(3)).await;
    let stuck_after = f.orders.settings.stuck_after;
    assert_eq!(
        sweeper::redrive_stuck(&f.orders, Utc::now()).await.unwrap(),
        0
    );
    let mut at = order.created_at;
    for _ in 0..sweeper::MAX_REDRIVES + 2 {
        at += stuck_after;
        sweeper::redrive_stuck(&f.orders, at).await.unwrap();
    }
    let created = outbox(&f.orders, topics::ORDER_CREATED, order.id).await;
    assert_eq!(created.len() as i64, 1 + sweeper::MAX_REDRIVES);
    assert_eq!(created[0].payload, created[3].payload);
}

/// The trace reads the records the bus keeps: the outbox row, the dedupe records of the groups
/// that applied the event, and the dead letters of those that gave up on it.
async fn a_trace_shows_each_event_who_applied_it_and_its_dead_letters(f: Fixture) {
    let user = new_user(&f.orders).await;
    let order = place_order(&f.orders, user, &[line(1, 5_000, 1)], None).await;
    let created = outbox(&f.orders, topics::ORDER_CREATED, order.id)
        .await
        .pop()
        .unwrap();
    let db = f.orders.db();
    let now = chrono::Utc::now();
    let mut tx = db.begin().await.unwrap();
    db::exec!(
        tx,
        "UPDATE outbox SET published_at = $1 WHERE event_id = $2",
        now,
        created.id
    )
    .unwrap();
    db::exec!(
        tx,
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3)",
        "catalog-reserve",
        created.id,
        now
    )
    .unwrap();
    db::exec!(
        tx,
        "INSERT INTO dead_letters (consumer, event_id, topic, envelope, error, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        "coupon-use",
        created.id,
        created.topic(),
        sqlx::types::Json(&created),
        "boom",
        5
    )
    .unwrap();
    tx.commit().await.unwrap();

    let trace = trace::trace(db, order.id).await.unwrap();
    assert_eq!(trace.order.status, OrderStatus::Pending);
    let [step] = &trace.steps[..] else {
        panic!("one event: {trace:?}")
    };
    assert_eq!(step.event.id, created.id);
    assert!(step.published_at.is_some());
    assert_eq!(
        step.applied
            .iter()
            .map(|(g, _)| g.as_str())
            .collect::<Vec<_>>(),
        ["catalog-reserve"]
    );
    assert_eq!(
        (
            step.dead_letters[0].consumer.as_str(),
            step.dead_letters[0].attempts
        ),
        ("coupon-use", 5)
    );
    let shown = trace.to_string();
    for expected in [
        "PENDING",
        "order-created",
        "applied by catalog-reserve",
        "DEAD LETTER of coupon-use",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    assert!(matches!(
        trace::trace(db, order.id + 1000).await,
        Err(OrderError::NotFound)
    ));
}

testkit::on_both_adapter_sets!(fixture;
    a_trace_shows_each_event_who_applied_it_and_its_dead_letters,
    placing_stores_a_pending_order_and_order_created_in_one_transaction,
    coupon_used_prices_the_order_once_with_the_reserved_prices,
    failure_replies_fail_a_pending_order_with_their_reason,
    payment_takes_the_points_once_and_announces_the_sale,
    only_open_orders_cancel_and_a_pending_order_cannot_be_paid,
    the_sweeper_expires_unpaid_and_given_up_orders_once,
    a_stuck_saga_is_re_driven_a_bounded_number_of_times,
);
