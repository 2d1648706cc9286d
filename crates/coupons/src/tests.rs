//! The context's use cases on the embedded adapters, and on PostgreSQL and Redis when
//! `STAMPEDE_TEST_DATABASE_URL` / `STAMPEDE_TEST_CACHE_URL` are set (each run in a schema and
//! key prefix of its own).

use chrono::{Duration, Utc};
use events::Envelope;
use testkit::handle;
use uuid::Uuid;

use super::*;
use crate::{
    gate::{Admission, PendingTask, Snapshot, Take, Withdrawal},
    issue::{store::StoreResult, CouponIssuedSuccess},
};

struct Fixture {
    coupons: Coupons,
    _context: testkit::Context,
}

async fn fixture(adapters: testkit::Adapters) -> Option<Fixture> {
    let context = testkit::context(adapters).await?;
    Some(Fixture {
        coupons: Coupons::new(
            context.db.clone(),
            context.cache.clone(),
            context.bus.clone(),
        ),
        _context: context,
    })
}

async fn new_coupon(coupons: &Coupons, quantity: i64) -> Coupon {
    definition::create(
        coupons,
        NewCoupon {
            name: "spring sale".into(),
            discount_type: DiscountType::Fixed,
            discount_value: 3_000,
            total_quantity: quantity,
            expires_at: Utc::now() + Duration::hours(1),
        },
    )
    .await
    .unwrap()
}

async fn the_gate_admits_each_user_once_while_stock_lasts_and_takes_once_per_task(f: Fixture) {
    let gate = &f.coupons.gate;
    let now = Utc::now().timestamp_millis();
    let pending = |user| PendingTask {
        coupon_id: 42,
        user_id: user,
    };
    let task = Uuid::new_v4();
    assert_eq!(
        gate.admit(task, pending(1), now).await.unwrap(),
        Admission::Unknown
    );
    assert_eq!(gate.take(42, task).await.unwrap(), Take::Unknown);
    let snapshot = Snapshot {
        coupon_id: 42,
        expires_at_ms: now + 60_000,
        stock: 2,
        users: vec![9],
        keep_until_ms: now + 3_600_000,
    };
    gate.load(&snapshot).await.unwrap();
    let admit = |task, user, at| gate.admit(task, pending(user), at);
    assert_eq!(
        admit(Uuid::new_v4(), 9, now).await.unwrap(),
        Admission::AlreadyRequested
    );
    assert_eq!(admit(task, 1, now).await.unwrap(), Admission::Admitted);
    assert_eq!(gate.pending(task).await.unwrap(), Some(pending(1)));
    assert_eq!(
        admit(Uuid::new_v4(), 1, now).await.unwrap(),
        Admission::AlreadyRequested
    );
    assert_eq!(
        admit(Uuid::new_v4(), 2, now + 60_000).await.unwrap(),
        Admission::Expired
    );

    let other = Uuid::new_v4();
    assert_eq!(admit(other, 2, now).await.unwrap(), Admission::Admitted);
    gate.settle(task, pending(1)).await.unwrap();
    assert_eq!(
        admit(Uuid::new_v4(), 3, now).await.unwrap(),
        Admission::Held,
        "one request per unit, and one not yet on the bus may still reopen its unit"
    );
    assert!(
        gate.undo(other, pending(2), Withdrawal::Refused)
            .await
            .unwrap(),
        "withdrawn"
    );
    assert!(
        gate.undo(other, pending(2), Withdrawal::Refused)
            .await
            .unwrap(),
        "withdrawing twice is the same"
    );
    assert_eq!(gate.pending(other).await.unwrap(), None);
    assert_eq!(
        gate.take(42, other).await.unwrap(),
        Take::Withdrawn,
        "a withdrawn request that still arrives takes nothing"
    );
    let third = Uuid::new_v4();
    assert_eq!(
        admit(third, 3, now).await.unwrap(),
        Admission::Admitted,
        "the undone unit is open again"
    );
    gate.settle(third, pending(3)).await.unwrap();
    assert_eq!(
        admit(Uuid::new_v4(), 4, now).await.unwrap(),
        Admission::SoldOut,
        "every unit is on its way to the stock consumer"
    );

    assert_eq!(gate.take(42, task).await.unwrap(), Take::Taken);
    assert_eq!(
        gate.take(42, task).await.unwrap(),
        Take::Taken,
        "same task, same outcome"
    );
    assert_eq!(gate.take(42, third).await.unwrap(), Take::Taken);
    assert!(
        !gate
            .undo(third, pending(3), Withdrawal::Refused)
            .await
            .unwrap(),
        "a request whose unit was taken went through: it is not withdrawn"
    );
    assert_eq!(
        admit(Uuid::new_v4(), 3, now).await.unwrap(),
        Admission::AlreadyRequested,
        "and its user stays marked"
    );
    assert_eq!(
        gate.take(42, Uuid::new_v4()).await.unwrap(),
        Take::SoldOut,
        "two units, taken once each"
    );
    assert_eq!(
        admit(Uuid::new_v4(), 4, now).await.unwrap(),
        Admission::SoldOut
    );

    gate.load(&Snapshot {
        stock: 100,
        ..snapshot
    })
    .await
    .unwrap();
    assert_eq!(
        gate.take(42, Uuid::new_v4()).await.unwrap(),
        Take::SoldOut,
        "a loaded gate is not overwritten"
    );
}

/// A request whose process died between the gate and the bus holds its unit (others are told
/// to retry, not `SOLD_OUT`) until the reconciler withdraws it: then its task fails
/// `INTERNAL`, the unit is open again and its user may ask again. A request still young is left
/// to its own process.
async fn a_request_its_process_never_published_is_withdrawn_and_its_task_fails(f: Fixture) {
    let coupons = &f.coupons;
    let coupon = new_coupon(coupons, 2).await;
    gate::rebuild(coupons, coupon.id).await.unwrap();
    let pending = |user| PendingTask {
        coupon_id: coupon.id,
        user_id: user,
    };
    let (orphan, young) = (Uuid::new_v4(), Uuid::new_v4());
    let a_minute_ago = (Utc::now() - Duration::minutes(1)).timestamp_millis();
    let gate = &coupons.gate;
    assert_eq!(
        gate.admit(orphan, pending(1), a_minute_ago).await.unwrap(),
        Admission::Admitted
    );
    let now = Utc::now().timestamp_millis();
    assert_eq!(
        gate.admit(young, pending(3), now).await.unwrap(),
        Admission::Admitted
    );
    assert!(matches!(
        issue::request(coupons, coupon.id, 2).await,
        Err(CouponError::Held)
    ));

    assert_eq!(issue::reconcile::reconcile(coupons).await.unwrap(), 1);
    assert_eq!(
        issue::reconcile::reconcile(coupons).await.unwrap(),
        0,
        "withdrawn once; the young request is left alone"
    );
    let status = |task| async move { issue::find_task(coupons, task).await.unwrap() };
    assert_eq!(
        status(orphan).await.status,
        TaskStatus::Pending,
        "until its failure is stored"
    );
    let failure = testkit::outbox(&coupons.db, &coupon.id.to_string())
        .await
        .pop()
        .expect("the reconciler wrote the task's failure");
    handle(&coupons.db, &StoreResult::new(coupons.clone()), failure).await;
    let failed = status(orphan).await;
    assert_eq!(
        (failed.status, failed.reason),
        (TaskStatus::Failed, Some(FailReason::Internal))
    );

    gate.settle(young, pending(3)).await.unwrap();
    let again = issue::request(coupons, coupon.id, 1).await.unwrap();
    assert_eq!(again.status, TaskStatus::Pending, "the unit is open again");
    assert!(matches!(
        issue::request(coupons, coupon.id, 2).await,
        Err(CouponError::SoldOut)
    ));
}

/// A user asking again for a coupon whose request this process published is refused from
/// memory: here the gate has been made to forget the user, and would admit them.
async fn a_repeat_of_a_request_this_process_published_is_refused_without_the_gate(f: Fixture) {
    let coupons = &f.coupons;
    let coupon = new_coupon(coupons, 5).await;
    let first = issue::request(coupons, coupon.id, 1).await.unwrap();
    let pending = PendingTask {
        coupon_id: coupon.id,
        user_id: 1,
    };
    assert!(coupons
        .gate
        .undo(first.task_id, pending, Withdrawal::Refused)
        .await
        .unwrap());
    assert!(matches!(
        issue::request(coupons, coupon.id, 1).await,
        Err(CouponError::AlreadyRequested)
    ));
    let elsewhere = Coupons::new(
        coupons.db.clone(),
        coupons.cache.clone(),
        coupons.bus.clone(),
    );
    assert!(
        issue::request(&elsewhere, coupon.id, 1).await.is_ok(),
        "another process asks the gate"
    );
}

/// Sends a `coupon-issued-success` for `user` through the store consumer; returns the task.
async fn store_success(coupons: &Coupons, coupon: i64, user: i64, task: Uuid) -> Task {
    let event = Envelope::new(&CouponIssuedSuccess {
        task_id: task,
        coupon_id: coupon,
        user_id: user,
    });
    handle(&coupons.db, &StoreResult::new(coupons.clone()), event).await;
    issue::find_task(coupons, task).await.unwrap()
}

async fn the_database_never_issues_more_than_the_total_or_twice_to_a_user(f: Fixture) {
    let coupons = &f.coupons;
    let coupon = new_coupon(coupons, 2).await;
    let first = Uuid::new_v4();
    let task = store_success(coupons, coupon.id, 1, first).await;
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(
        store_success(coupons, coupon.id, 1, first).await,
        task,
        "a replay changes nothing"
    );
    let twice = store_success(coupons, coupon.id, 1, Uuid::new_v4()).await;
    assert_eq!(twice.reason, Some(FailReason::AlreadyIssued));
    assert_eq!(
        store_success(coupons, coupon.id, 2, Uuid::new_v4())
            .await
            .status,
        TaskStatus::Success
    );
    // A gate rebuilt too generously lets a third success through: the database refuses it.
    let third = store_success(coupons, coupon.id, 3, Uuid::new_v4()).await;
    assert_eq!(third.reason, Some(FailReason::SoldOut));
    assert_eq!(
        definition::find(&coupons.db, coupon.id)
            .await
            .unwrap()
            .remaining_quantity,
        0
    );
    assert_eq!(wallet::list(&coupons.db, 1).await.unwrap().len(), 1);
    // As an operator follows drops, newest first: units issued and tasks by result.
    let other = new_coupon(coupons, 9).await;
    let drops = definition::drops(&coupons.db, 2).await.unwrap();
    let shown: Vec<_> = drops
        .iter()
        .map(|d| (d.coupon.id, d.issued, d.tasks_succeeded, d.tasks_failed))
        .collect();
    assert_eq!(shown, [(other.id, 0, 0, 0), (coupon.id, 2, 2, 2)]);
}

/// The context of another process on the same database and bus, after the gate's state was
/// lost: Redis emptied of this test's keys, or, in process, a new process.
async fn with_the_gate_state_lost(coupons: &Coupons) -> Coupons {
    let cache = match &coupons.cache {
        cache::Cache::Memory(_) => cache::Cache::connect("memory://", "").await.unwrap(),
        cache::Cache::Redis(redis) => {
            let mut conn = redis.connection();
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg(format!("{}*", redis.key("")))
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                ::redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .unwrap();
            }
            coupons.cache.clone()
        }
    };
    Coupons::new(coupons.db.clone(), cache, coupons.bus.clone())
}

/// Runs a request's `coupon-issued` through the stock and store consumers; returns its task.
async fn take_and_store(coupons: &Coupons, task: &Task) -> Task {
    let issued = Envelope::new(&issue::CouponIssued {
        task_id: task.task_id,
        coupon_id: task.coupon_id,
        user_id: task.user_id,
    });
    let take = issue::take_stock::TakeStock::new(coupons.clone());
    let replies = handle(&coupons.db, &take, issued).await;
    let store = StoreResult::new(coupons.clone());
    for reply in replies {
        handle(&coupons.db, &store, reply).await;
    }
    issue::find_task(coupons, task.task_id).await.unwrap()
}

/// A user's request is on its way when the gate's state is lost; the rebuilt gate does not know
/// it and admits the user again. Both requests take a unit, the database refuses the second
/// (`ALREADY_ISSUED`), and that unit goes back to the gate: the rest of the coupon still sells,
/// and `SOLD_OUT` comes only when nothing remains.
async fn a_unit_refused_after_the_gate_state_was_lost_is_sold_to_someone_else(f: Fixture) {
    let coupon = new_coupon(&f.coupons, 2).await;
    let in_flight = issue::request(&f.coupons, coupon.id, 1).await.unwrap();
    let coupons = with_the_gate_state_lost(&f.coupons).await;
    let again = issue::request(&coupons, coupon.id, 1).await.unwrap();
    assert_eq!(
        take_and_store(&coupons, &in_flight).await.status,
        TaskStatus::Success
    );
    let refused = take_and_store(&coupons, &again).await;
    assert_eq!(refused.reason, Some(FailReason::AlreadyIssued));
    assert_eq!(
        take_and_store(&coupons, &again).await,
        refused,
        "a redelivery gives back nothing more"
    );
    let remaining = || async {
        definition::find(&coupons.db, coupon.id)
            .await
            .unwrap()
            .remaining_quantity
    };
    assert_eq!(remaining().await, 1);
    let last = issue::request(&coupons, coupon.id, 2)
        .await
        .expect("a unit remains, so it is not SOLD_OUT");
    assert_eq!(
        take_and_store(&coupons, &last).await.status,
        TaskStatus::Success
    );
    assert_eq!(remaining().await, 0);
    assert!(matches!(
        issue::request(&coupons, coupon.id, 3).await,
        Err(CouponError::SoldOut)
    ));
}

async fn a_coupon_is_used_once_per_order_and_restored_once(f: Fixture) {
    let coupons = &f.coupons;
    let coupon = new_coupon(coupons, 5).await;
    let held = store_success(coupons, coupon.id, 7, Uuid::new_v4()).await;
    let id = held.user_coupon_id.unwrap();
    let now = Utc::now();
    let run = |user: i64, order: i64| {
        let db = coupons.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let used = wallet::use_for_order(&mut tx, id, user, order, now).await;
            tx.commit().await.unwrap();
            used
        }
    };
    let restore = |order: i64| {
        let db = coupons.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let restored = wallet::restore_for_order(&mut tx, order).await.unwrap();
            tx.commit().await.unwrap();
            restored
        }
    };
    assert!(matches!(run(8, 100).await, Err(CouponUseError::NotOwned)));
    let discount = run(7, 100).await.unwrap();
    assert_eq!(
        (discount.discount_type, discount.discount_value),
        (DiscountType::Fixed, 3_000)
    );
    assert_eq!(
        run(7, 100).await.unwrap(),
        discount,
        "the same order again: the same answer"
    );
    assert!(matches!(
        run(7, 101).await,
        Err(CouponUseError::AlreadyUsed)
    ));
    assert_eq!(
        wallet::list(&coupons.db, 7).await.unwrap()[0].status,
        UserCouponStatus::Used
    );
    assert!(restore(100).await);
    assert!(!restore(100).await, "restored once");
    assert_eq!(run(7, 101).await.unwrap(), discount);
    assert!(
        !restore(100).await,
        "the old order cannot take it back from the new one"
    );
    assert!(restore(101).await);
    let mut tx = coupons.db.begin().await.unwrap();
    let late = wallet::use_for_order(&mut tx, id, 7, 102, coupon.expires_at).await;
    assert!(matches!(late, Err(CouponUseError::Expired)));
    assert!(matches!(
        wallet::use_for_order(&mut tx, 999_999, 7, 103, now).await,
        Err(CouponUseError::NotFound)
    ));
}

async fn the_saga_uses_an_orders_coupon_once_and_restores_it_even_when_cancelled_first(f: Fixture) {
    use events::order::{
        CouponUseFailed, CouponUsed, DiscountKind, OrderCancelled, SagaFailure, StockDecreased,
    };
    let coupons = &f.coupons;
    let handlers = coupons.handlers();
    let group = |name| {
        handlers
            .iter()
            .find(|h| h.group() == name)
            .expect("a coupons consumer")
            .as_ref()
    };
    let (use_coupon, restore) = (group("coupon-use"), group("coupon-restore"));
    let coupon = new_coupon(coupons, 5).await;
    let held = store_success(coupons, coupon.id, 7, Uuid::new_v4())
        .await
        .user_coupon_id;
    let decreased = |order: i64, user_coupon_id: Option<i64>| {
        let event = StockDecreased {
            order_id: order,
            user_id: 7,
            items: Vec::new(),
            user_coupon_id,
        };
        Envelope::new(&event)
    };
    let cancelled = |order: i64| Envelope::new(&OrderCancelled { order_id: order });

    let used: CouponUsed = handle(&coupons.db, use_coupon, decreased(100, held)).await[0]
        .decode()
        .unwrap();
    let discount = used.discount.expect("a discount");
    assert_eq!(
        (discount.discount_type, discount.discount_value),
        (DiscountKind::Fixed, 3_000)
    );
    let again: CouponUsed = handle(&coupons.db, use_coupon, decreased(100, held)).await[0]
        .decode()
        .unwrap();
    assert_eq!(
        again.discount,
        Some(discount),
        "the same order again: the same answer"
    );
    let other: CouponUseFailed = handle(&coupons.db, use_coupon, decreased(101, held)).await[0]
        .decode()
        .unwrap();
    assert_eq!(other.reason, SagaFailure::CouponInvalid);
    let plain: CouponUsed = handle(&coupons.db, use_coupon, decreased(102, None)).await[0]
        .decode()
        .unwrap();
    assert_eq!(plain.discount, None);

    handle(&coupons.db, restore, cancelled(103)).await;
    let late: CouponUseFailed = handle(&coupons.db, use_coupon, decreased(103, held)).await[0]
        .decode()
        .unwrap();
    assert_eq!(late.reason, SagaFailure::Cancelled);

    assert_eq!(
        wallet::list(&coupons.db, 7).await.unwrap()[0].status,
        UserCouponStatus::Used
    );
    handle(&coupons.db, restore, cancelled(100)).await;
    handle(&coupons.db, restore, cancelled(100)).await;
    assert_eq!(
        wallet::list(&coupons.db, 7).await.unwrap()[0].status,
        UserCouponStatus::Available
    );
}

/// A unit the gate lost count of (as after a Redis failover lost a take's record and the take
/// was replayed) is reopened from the database's count once the sale is quiet, and then sold:
/// never while a unit was just taken (it may be on its way to the database) or a request is
/// unpublished.
async fn a_unit_the_gate_lost_count_of_is_reopened_once_the_sale_is_quiet(f: Fixture) {
    let coupons = &f.coupons;
    let coupon = new_coupon(coupons, 3).await;
    gate::rebuild(coupons, coupon.id).await.unwrap();
    let gate = &coupons.gate;
    let pending = |user| PendingTask {
        coupon_id: coupon.id,
        user_id: user,
    };
    // A take the database never hears of: the gate counts 2 units, the database 3.
    assert_eq!(
        gate.take(coupon.id, Uuid::new_v4()).await.unwrap(),
        Take::Taken
    );
    let restock = |quiet| issue::restock::restock_lost_units(coupons, quiet);
    assert_eq!(
        restock(std::time::Duration::from_secs(30)).await.unwrap(),
        0,
        "a unit was just taken"
    );
    let unpublished = Uuid::new_v4();
    let now = Utc::now().timestamp_millis();
    assert_eq!(
        gate.admit(unpublished, pending(1), now).await.unwrap(),
        Admission::Admitted
    );
    assert_eq!(
        restock(std::time::Duration::ZERO).await.unwrap(),
        0,
        "a request is unpublished"
    );
    gate.undo(unpublished, pending(1), Withdrawal::Refused)
        .await
        .unwrap();
    assert_eq!(restock(std::time::Duration::ZERO).await.unwrap(), 1);
    assert_eq!(
        restock(std::time::Duration::ZERO).await.unwrap(),
        0,
        "reopened once"
    );
    for user in 2..=4 {
        let task = Uuid::new_v4();
        assert_eq!(
            gate.admit(task, pending(user), now).await.unwrap(),
            Admission::Admitted
        );
        gate.settle(task, pending(user)).await.unwrap();
        assert_eq!(gate.take(coupon.id, task).await.unwrap(), Take::Taken);
    }
    assert_eq!(
        gate.admit(Uuid::new_v4(), pending(5), now).await.unwrap(),
        Admission::SoldOut,
        "the database's three units, and no more"
    );
}

testkit::on_both_adapter_sets!(
    fixture;
    a_unit_the_gate_lost_count_of_is_reopened_once_the_sale_is_quiet,
    the_gate_admits_each_user_once_while_stock_lasts_and_takes_once_per_task,
    a_request_its_process_never_published_is_withdrawn_and_its_task_fails,
    a_repeat_of_a_request_this_process_published_is_refused_without_the_gate,
    the_database_never_issues_more_than_the_total_or_twice_to_a_user,
    a_unit_refused_after_the_gate_state_was_lost_is_sold_to_someone_else,
    a_coupon_is_used_once_per_order_and_restored_once,
    the_saga_uses_an_orders_coupon_once_and_restores_it_even_when_cancelled_first,
);
