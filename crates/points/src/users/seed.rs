//! Test-only accounts in bulk, for load tests: users `seed-{i}@load.stampede.invalid` that share
//! one password hash, made idempotently (a second run finds the ones the first made and gives
//! them its own password).

use chrono::Utc;
use db::{on_db, on_tx, sqlx, Db};

/// The domain of seeded accounts: `.invalid` can never be a real address.
pub const SEED_DOMAIN: &str = "load.stampede.invalid";

/// Users written per statement.
const CHUNK: usize = 5_000;

pub fn seed_email(i: usize) -> String {
    format!("seed-{i}@{SEED_DOMAIN}")
}

/// Accounts in `db` that no seed made.
pub async fn other_accounts(db: &Db) -> anyhow::Result<i64> {
    let pattern = format!("seed-%@{SEED_DOMAIN}");
    Ok(on_db!(db, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE email NOT LIKE $1",
    )
    .bind(&pattern)
    .fetch_one(c)
    .await)?)
}

/// Makes the seeded users `0..count` that do not exist yet and re-keys those that do, each
/// with `password_hash`, calling
/// `progress(done)` after each chunk; returns their ids, in order.
pub async fn seed(
    db: &Db,
    count: usize,
    password_hash: &str,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Vec<i64>> {
    let now = Utc::now();
    for start in (0..count).step_by(CHUNK) {
        let chunk = start..(start + CHUNK).min(count);
        let mut tx = db.begin().await?;
        on_tx!(tx, c => {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO users (name, email, password_hash, is_admin, created_at) ",
            );
            insert.push_values(chunk.clone(), |mut row, i| {
                row.push_bind(format!("seed {i}"))
                    .push_bind(seed_email(i))
                    .push_bind(password_hash)
                    .push_bind(false)
                    .push_bind(now);
            });
            insert.push(
                " ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash",
            );
            insert.build().execute(c).await.map(|_| ())
        })?;
        tx.commit().await?;
        progress(chunk.end);
    }
    let pattern = format!("seed-%@{SEED_DOMAIN}");
    let rows: Vec<(i64, String)> = on_db!(db, c => sqlx::query_as(
        "SELECT id, email FROM users WHERE email LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(c)
    .await)?;
    let ids: std::collections::HashMap<String, i64> =
        rows.into_iter().map(|(id, email)| (email, id)).collect();
    (0..count)
        .map(|i| {
            ids.get(&seed_email(i))
                .copied()
                .ok_or_else(|| anyhow::anyhow!("seeded user {i} is missing"))
        })
        .collect()
}
