//! The balance use cases on SQLite, and on PostgreSQL when `STAMPEDE_TEST_DATABASE_URL` is set
//! (each run in a schema of its own).

use db::Db;
use futures::future::BoxFuture;

use super::*;
use crate::users::sign_up;

struct Fixture {
    db: Db,
    user: i64,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/p.db", dir.path().display()), None)
        .await
        .unwrap();
    fixture(db, dir).await
}

async fn postgres() -> Option<Fixture> {
    let Ok(url) = std::env::var("STAMPEDE_TEST_DATABASE_URL") else {
        eprintln!("skipped: STAMPEDE_TEST_DATABASE_URL is not set");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let db = Db::connect(&url, Some(&schema)).await.unwrap();
    Some(fixture(db, tempfile::tempdir().unwrap()).await)
}

async fn fixture(db: Db, dir: tempfile::TempDir) -> Fixture {
    db.migrate().await.unwrap();
    let user = sign_up(
        &db,
        &Default::default(),
        "kim",
        "kim@example.com",
        "pass-word",
    )
    .await
    .unwrap();
    Fixture {
        db,
        user: user.id,
        _dir: dir,
    }
}

/// Runs `f` in a transaction that commits when it succeeds.
async fn in_tx<T>(
    db: &Db,
    f: impl for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T, PointsError>>,
) -> Result<T, PointsError> {
    let mut tx = db.begin().await?;
    let out = f(&mut tx).await?;
    tx.commit().await?;
    Ok(out)
}

async fn charges_are_bounded_and_recorded_with_the_balance_after(f: Fixture) {
    let (db, user) = (&f.db, f.user);
    assert_eq!(balance(db, user).await.unwrap(), 0);
    for bad in [9_999, 1_000_001, 0, -10_000] {
        let r = in_tx(db, |tx| Box::pin(charge(tx, user, bad))).await;
        assert!(matches!(r, Err(PointsError::InvalidChargeAmount)), "{bad}");
    }
    assert_eq!(
        in_tx(db, |tx| Box::pin(charge(tx, user, 10_000)))
            .await
            .unwrap(),
        10_000
    );
    assert_eq!(
        in_tx(db, |tx| Box::pin(charge(tx, user, 1_000_000)))
            .await
            .unwrap(),
        1_010_000
    );
    let entries = history(db, user).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].kind, entries[0].balance_after),
        (Kind::Charge, 1_010_000)
    );
    assert_eq!(entries[1].balance_after, 10_000);
}

async fn using_points_for_an_order_is_idempotent_and_never_overdraws(f: Fixture) {
    let (db, user) = (&f.db, f.user);
    in_tx(db, |tx| Box::pin(charge(tx, user, 50_000)))
        .await
        .unwrap();
    let short = in_tx(db, |tx| Box::pin(use_for_order(tx, user, 7, 60_000))).await;
    assert!(matches!(
        short,
        Err(PointsError::Insufficient {
            balance: 50_000,
            needed: 60_000
        })
    ));
    assert_eq!(
        in_tx(db, |tx| Box::pin(use_for_order(tx, user, 7, 30_000)))
            .await
            .unwrap(),
        20_000
    );
    assert_eq!(
        in_tx(db, |tx| Box::pin(use_for_order(tx, user, 7, 30_000)))
            .await
            .unwrap(),
        20_000
    );
    assert_eq!(balance(db, user).await.unwrap(), 20_000);
    let kinds: Vec<Kind> = history(db, user)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec![Kind::Use, Kind::Charge]);
}

async fn concurrent_uses_for_one_order_take_the_points_once(f: Fixture) {
    let (db, user) = (&f.db, f.user);
    in_tx(db, |tx| Box::pin(charge(tx, user, 100_000)))
        .await
        .unwrap();
    let uses = (0..10).map(|_| in_tx(db, |tx| Box::pin(use_for_order(tx, user, 42, 30_000))));
    for result in futures::future::join_all(uses).await {
        assert_eq!(result.unwrap(), 70_000);
    }
    assert_eq!(balance(db, user).await.unwrap(), 70_000);
    // Concurrent spends of different orders never take the balance below zero.
    let spends = (100..110).map(|order| {
        in_tx(db, move |tx| {
            Box::pin(use_for_order(tx, user, order, 20_000))
        })
    });
    let succeeded = futures::future::join_all(spends)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    assert_eq!(succeeded, 3);
    assert_eq!(balance(db, user).await.unwrap(), 10_000);
}

macro_rules! on_both_databases {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::sqlite().await).await
            })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(fixture) = super::postgres().await {
                    super::$test(fixture).await
                }
            })*
        }
    };
}

on_both_databases!(
    charges_are_bounded_and_recorded_with_the_balance_after,
    using_points_for_an_order_is_idempotent_and_never_overdraws,
    concurrent_uses_for_one_order_take_the_points_once,
);
