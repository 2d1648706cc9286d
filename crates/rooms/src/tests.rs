//! Room definitions on the embedded database, and on PostgreSQL when
//! `STAMPEDE_TEST_DATABASE_URL` is set (in a schema of its own).

use chrono::{DateTime, Duration, Utc};

use crate::definition::{change::change, change::RoomChange, close::close, create::create, find};
use crate::{ClosedReason, NewRoom, RoomError, RoomStatus};

struct Fixture {
    context: testkit::Context,
}

async fn fixture(adapters: testkit::Adapters) -> Option<Fixture> {
    Some(Fixture {
        context: testkit::context(adapters).await?,
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

/// The lines in the cache of the adapter set: the same answers from memory and from Redis.
mod lines {
    use chrono::{DateTime, Duration, Utc};

    use crate::{
        line::Claim,
        order::Seed,
        store::{Joined, Lines, Seen},
        PlaceStatus,
    };

    struct Fixture {
        lines: Lines,
        _context: testkit::Context,
    }

    async fn fixture(adapters: testkit::Adapters) -> Option<Fixture> {
        let context = testkit::context(adapters).await?;
        Some(Fixture {
            lines: Lines::on(&context.cache),
            _context: context,
        })
    }

    fn t0() -> DateTime<Utc> {
        "2026-12-04T10:00:00Z".parse().unwrap()
    }

    async fn joined(lines: &Lines, room: i64, user: i64, at: DateTime<Utc>) -> (Seen, bool) {
        match lines.join(room, Seed([1; 32]), user, at).await.unwrap() {
            Joined::Place(seen, new) => (seen, new),
            Joined::Closed => panic!("closed"),
        }
    }

    async fn status(lines: &Lines, room: i64, user: i64) -> Option<PlaceStatus> {
        let places = lines.places(room, &[user], t0(), false).await.unwrap();
        places[0].as_ref().map(|seen| seen.record.status)
    }

    async fn early_places_open_in_the_seed_order_and_admissions_follow_the_line(fixture: Fixture) {
        let (lines, room, seed) = (&fixture.lines, 11, Seed([1; 32]));
        lines.prepare(room, seed).await.unwrap();
        for user in 1..=20 {
            let (seen, new) = joined(lines, room, user, t0()).await;
            assert!(new);
            assert_eq!((seen.record.number, seen.position), (None, None));
        }
        let (again, new) = joined(lines, room, 5, t0()).await;
        assert!(!new);
        assert_eq!(again.record.generation, 1);
        assert!(lines.open(room, seed).await.unwrap());
        assert!(lines.open(room, seed).await.unwrap(), "once");
        let (late, _) = joined(lines, room, 100, t0()).await;
        assert_eq!(late.record.number, Some(21));
        assert_eq!(late.position, Some(21));
        let mut expected: Vec<i64> = (1..=20).collect();
        seed.shuffle(&mut expected);
        let users: Vec<i64> = (1..=20).collect();
        let places = lines.places(room, &users, t0(), false).await.unwrap();
        let mut numbered: Vec<(u64, i64)> = places
            .iter()
            .map(|seen| {
                let seen = seen.as_ref().unwrap();
                (seen.record.number.unwrap(), seen.record.user_id)
            })
            .collect();
        numbered.sort();
        let order: Vec<i64> = numbered.iter().map(|(_, user)| *user).collect();
        assert_eq!(order, expected);
        // The first of the line leaves; three are due with room for two: the next two go in.
        lines.leave(room, expected[0]).await.unwrap();
        let lasts = Duration::seconds(300);
        let waited = lines.admit(room, 3, Some(2), t0() + Duration::seconds(7), lasts);
        assert_eq!(
            waited.await.unwrap(),
            vec![Duration::seconds(7); 2],
            "each waited since joining"
        );
        assert_eq!(
            status(lines, room, expected[1]).await,
            Some(PlaceStatus::Admitted)
        );
        assert_eq!(
            status(lines, room, expected[2]).await,
            Some(PlaceStatus::Admitted)
        );
        assert_eq!(
            status(lines, room, expected[3]).await,
            Some(PlaceStatus::Waiting)
        );
        assert_eq!(
            lines.admit(room, 3, None, t0(), lasts).await.unwrap(),
            vec![],
            "admitted once"
        );
        let seen = lines
            .places(room, &[expected[3]], t0(), false)
            .await
            .unwrap();
        assert_eq!(seen[0].as_ref().unwrap().position, Some(1));
        let stats = lines.stats(room).await.unwrap();
        assert_eq!(
            (stats.waiting, stats.active, stats.admitted, stats.left),
            (17 + 1, 2, 2, 1)
        );
    }

    async fn a_claim_is_spent_by_an_accepted_request_and_freed_by_a_refused_one(fixture: Fixture) {
        let (lines, room, seed) = (&fixture.lines, 12, Seed([2; 32]));
        lines.prepare(room, seed).await.unwrap();
        lines.open(room, seed).await.unwrap();
        for user in 1..=3 {
            joined(lines, room, user, t0()).await;
        }
        let lease = Duration::seconds(60);
        assert_eq!(
            lines.claim(room, 1, t0(), lease).await.unwrap(),
            Claim::Required
        );
        lines
            .admit(room, 2, None, t0(), Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(
            lines.claim(room, 1, t0(), lease).await.unwrap(),
            Claim::Granted
        );
        assert_eq!(
            lines.claim(room, 1, t0(), lease).await.unwrap(),
            Claim::InUse
        );
        lines.settle(room, 1, false).await.unwrap();
        assert_eq!(status(lines, room, 1).await, Some(PlaceStatus::Admitted));
        assert_eq!(
            lines.claim(room, 1, t0(), lease).await.unwrap(),
            Claim::Granted
        );
        lines.settle(room, 1, true).await.unwrap();
        assert_eq!(status(lines, room, 1).await, Some(PlaceStatus::Used));
        // Settling what nobody claimed changes nothing; an unused admission expires.
        lines.settle(room, 2, true).await.unwrap();
        assert_eq!(status(lines, room, 2).await, Some(PlaceStatus::Admitted));
        let later = t0() + Duration::seconds(30);
        assert_eq!(
            lines.claim(room, 2, later, lease).await.unwrap(),
            Claim::Required
        );
        assert_eq!(status(lines, room, 2).await, Some(PlaceStatus::Expired));
        let (again, new) = joined(lines, room, 2, later).await;
        assert!(new);
        assert_eq!(again.record.generation, 2);
        assert_eq!(again.record.previous, Some(PlaceStatus::Expired));
        assert_eq!(lines.stats(room).await.unwrap().active, 0);
    }

    async fn unseen_places_are_dropped_and_a_closed_line_closes_every_waiting_place(
        fixture: Fixture,
    ) {
        let (lines, room, seed) = (&fixture.lines, 13, Seed([3; 32]));
        lines.prepare(room, seed).await.unwrap();
        lines.open(room, seed).await.unwrap();
        for user in 1..=4 {
            joined(lines, room, user, t0()).await;
        }
        let later = t0() + Duration::seconds(60);
        lines.places(room, &[2, 3, 4], later, true).await.unwrap();
        assert_eq!(lines.abandon(room, later).await.unwrap(), 1);
        assert_eq!(status(lines, room, 1).await, Some(PlaceStatus::Left));
        lines
            .admit(room, 1, None, later, Duration::seconds(300))
            .await
            .unwrap();
        assert_eq!(status(lines, room, 2).await, Some(PlaceStatus::Admitted));
        lines.close(room).await.unwrap();
        assert_eq!(status(lines, room, 3).await, Some(PlaceStatus::Closed));
        assert_eq!(status(lines, room, 2).await, Some(PlaceStatus::Admitted));
        assert_eq!(
            lines.join(room, seed, 9, later).await.unwrap(),
            Joined::Closed
        );
        let stats = lines.stats(room).await.unwrap();
        assert_eq!((stats.waiting, stats.dropped, stats.admitted), (0, 1, 1));
    }

    async fn an_unseen_place_is_never_admitted_however_far_back_it_waits(fixture: Fixture) {
        let (lines, room, seed) = (&fixture.lines, 14, Seed([4; 32]));
        lines.prepare(room, seed).await.unwrap();
        lines.open(room, seed).await.unwrap();
        // More places than one abandonment pass looks at in Redis (its `SWEEP`, 1,000): the
        // pass cannot reach the unseen place at 1,100, so admission must drop it.
        let users: Vec<i64> = (1..=1_200).collect();
        for &user in &users {
            joined(lines, room, user, t0()).await;
        }
        let later = t0() + Duration::seconds(60);
        let watched: Vec<i64> = users
            .iter()
            .copied()
            .filter(|&user| user != 1 && user != 1_100)
            .collect();
        lines.places(room, &watched, later, true).await.unwrap();
        let swept = lines.abandon(room, later).await.unwrap();
        assert!((1..=2).contains(&swept), "the first place is looked at");
        let admitted = lines
            .admit(room, 1_200, None, later, Duration::seconds(300))
            .await
            .unwrap();
        assert_eq!(admitted.len(), 1_198);
        assert_eq!(status(lines, room, 1_100).await, Some(PlaceStatus::Left));
        let stats = lines.stats(room).await.unwrap();
        assert_eq!(
            (stats.waiting, stats.admitted, stats.dropped),
            (0, 1_198, 2)
        );
    }

    testkit::on_both_adapter_sets!(
        fixture;
        early_places_open_in_the_seed_order_and_admissions_follow_the_line,
        a_claim_is_spent_by_an_accepted_request_and_freed_by_a_refused_one,
        unseen_places_are_dropped_and_a_closed_line_closes_every_waiting_place,
        an_unseen_place_is_never_admitted_however_far_back_it_waits,
    );
}
