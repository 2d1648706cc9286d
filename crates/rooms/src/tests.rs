//! Room definitions on the embedded database, and on PostgreSQL when
//! `STAMPEDE_TEST_DATABASE_URL` is set (in a schema of its own).

use chrono::{DateTime, Duration, Utc};

use crate::definition::{change::change, change::RoomChange, close::close, create::create, find};
use crate::{ClosedReason, NewRoom, RoomError, RoomStatus};

struct Fixture {
    context: testkit::Context,
}

async fn fixture(production: bool) -> Option<Fixture> {
    Some(Fixture {
        context: testkit::context(production).await?,
    })
}

fn new_room(coupon: i64, opens_at: DateTime<Utc>) -> NewRoom {
    NewRoom {
        name: "Friday drop".into(),
        coupon_id: Some(coupon),
        product_id: None,
        opens_at,
        admit_per_second: 50,
        max_active: None,
        admission_secs: None,
    }
}

async fn a_room_is_stored_with_its_opening_rate_and_a_seed_published_once_open(fixture: Fixture) {
    let db = &fixture.context.db;
    let now = Utc::now();
    let opens = now + Duration::minutes(5);
    let room = create(db, &new_room(1, opens), now).await.unwrap();
    assert_eq!(room.status(now), RoomStatus::Scheduled);
    assert_eq!(room.published_seed(now), None);
    assert_eq!(room.admission_secs, 300);
    assert_eq!(room.schedule.due(opens + Duration::seconds(2)), 100);
    let found = find(db, room.id).await.unwrap();
    assert_eq!(found, room);
    assert_eq!(found.published_seed(opens), Some(room.seed.to_hex()));
    assert!(matches!(
        find(db, room.id + 1_000).await,
        Err(RoomError::NotFound)
    ));
}

async fn a_sale_has_one_room_until_it_closes(fixture: Fixture) {
    let db = &fixture.context.db;
    let now = Utc::now();
    let first = create(db, &new_room(7, now), now).await.unwrap();
    assert!(matches!(
        create(db, &new_room(7, now), now).await,
        Err(RoomError::Exists)
    ));
    let closed = close(db, first.id, ClosedReason::ClosedByAdmin, now)
        .await
        .unwrap();
    assert_eq!(closed.status(now), RoomStatus::Closed);
    assert_eq!(closed.closed_reason, Some(ClosedReason::ClosedByAdmin));
    // Closing again keeps the first reason.
    let again = close(db, first.id, ClosedReason::SoldOut, now)
        .await
        .unwrap();
    assert_eq!(again.closed_reason, Some(ClosedReason::ClosedByAdmin));
    create(db, &new_room(7, now), now).await.unwrap();
    assert!(matches!(
        change(db, first.id, &RoomChange::default(), now).await,
        Err(RoomError::Closed)
    ));
}

async fn changes_apply_from_their_moment_and_never_rewrite_what_was_due(fixture: Fixture) {
    let db = &fixture.context.db;
    let opens: DateTime<Utc> = Utc::now() - Duration::seconds(100);
    let room = create(db, &new_room(3, opens), opens).await.unwrap();
    let at = |secs| opens + Duration::seconds(secs);
    let paused = RoomChange {
        paused: Some(true),
        ..RoomChange::default()
    };
    change(db, room.id, &paused, at(10)).await.unwrap();
    let faster = RoomChange {
        admit_per_second: Some(200),
        paused: Some(false),
        max_active: Some(40),
    };
    let changed = change(db, room.id, &faster, at(20)).await.unwrap();
    assert_eq!(changed.max_active, Some(40));
    assert_eq!(changed.status(at(25)), RoomStatus::Open);
    assert_eq!(
        changed.schedule.due(at(15)),
        500,
        "50/s for 10 s, then paused"
    );
    assert_eq!(changed.schedule.due(at(30)), 500 + 2_000);
    let refused = RoomChange {
        admit_per_second: Some(0),
        ..RoomChange::default()
    };
    assert!(matches!(
        change(db, room.id, &refused, at(30)).await,
        Err(RoomError::Invalid {
            field: "admitPerSecond",
            ..
        })
    ));
    assert_eq!(find(db, room.id).await.unwrap(), changed);
}

testkit::on_both_adapter_sets!(
    fixture;
    a_room_is_stored_with_its_opening_rate_and_a_seed_published_once_open,
    a_sale_has_one_room_until_it_closes,
    changes_apply_from_their_moment_and_never_rewrite_what_was_due,
);
