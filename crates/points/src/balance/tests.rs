use db::Db;

use super::*;
use crate::users::sign_up;

async fn setup() -> (Db, i64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/p.db", dir.path().display()), None)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let user = sign_up(&db, "kim", "kim@example.com", "pass-word")
        .await
        .unwrap();
    (db, user.id, dir)
}

async fn in_tx<T>(
    db: &Db,
    f: impl for<'t> FnOnce(&'t mut Tx) -> futures_like::BoxFuture<'t, Result<T, PointsError>>,
) -> Result<T, PointsError> {
    let mut tx = db.begin().await?;
    let out = f(&mut tx).await?;
    tx.commit().await?;
    Ok(out)
}

mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

#[tokio::test]
async fn charges_are_bounded_and_recorded_with_the_balance_after() {
    let (db, user, _dir) = setup().await;
    assert_eq!(balance(&db, user).await.unwrap(), 0);
    for bad in [9_999, 1_000_001, 0, -10_000] {
        let r = in_tx(&db, |tx| Box::pin(charge(tx, user, bad))).await;
        assert!(matches!(r, Err(PointsError::InvalidChargeAmount)), "{bad}");
    }
    assert_eq!(
        in_tx(&db, |tx| Box::pin(charge(tx, user, 10_000)))
            .await
            .unwrap(),
        10_000
    );
    assert_eq!(
        in_tx(&db, |tx| Box::pin(charge(tx, user, 1_000_000)))
            .await
            .unwrap(),
        1_010_000
    );
    let entries = history(&db, user).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].kind, entries[0].balance_after),
        (Kind::Charge, 1_010_000)
    );
    assert_eq!(entries[1].balance_after, 10_000);
}

#[tokio::test]
async fn using_points_for_an_order_is_idempotent_and_never_overdraws() {
    let (db, user, _dir) = setup().await;
    in_tx(&db, |tx| Box::pin(charge(tx, user, 50_000)))
        .await
        .unwrap();
    let short = in_tx(&db, |tx| Box::pin(use_for_order(tx, user, 7, 60_000))).await;
    assert!(matches!(
        short,
        Err(PointsError::Insufficient {
            balance: 50_000,
            needed: 60_000
        })
    ));
    assert_eq!(
        in_tx(&db, |tx| Box::pin(use_for_order(tx, user, 7, 30_000)))
            .await
            .unwrap(),
        20_000
    );
    assert_eq!(
        in_tx(&db, |tx| Box::pin(use_for_order(tx, user, 7, 30_000)))
            .await
            .unwrap(),
        20_000
    );
    assert_eq!(balance(&db, user).await.unwrap(), 20_000);

    assert_eq!(
        in_tx(&db, |tx| Box::pin(refund_order(tx, user, 7)))
            .await
            .unwrap(),
        Some(50_000)
    );
    assert_eq!(
        in_tx(&db, |tx| Box::pin(refund_order(tx, user, 7)))
            .await
            .unwrap(),
        Some(50_000)
    );
    assert_eq!(
        in_tx(&db, |tx| Box::pin(refund_order(tx, user, 8)))
            .await
            .unwrap(),
        None
    );
    assert_eq!(balance(&db, user).await.unwrap(), 50_000);
    let kinds: Vec<Kind> = history(&db, user)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec![Kind::Refund, Kind::Use, Kind::Charge]);
}
