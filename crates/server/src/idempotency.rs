//! The store of `Idempotency-Key`s (table `idempotency_keys`): a key is claimed in the
//! transaction of the request's effect and its response recorded there too, so a key is either
//! claimed with its response or not at all. `http/idempotency.rs` runs requests through it.

use chrono::Utc;
use db::{exec, on_tx, sqlx, Db, Tx};

/// How long keys are remembered: the contract promises at least 24 hours.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(48 * 3600);

/// Whom a key belongs to: the operation (`orders.place`), the caller, and the key they sent.
#[derive(Debug, Clone, Copy)]
pub struct KeyOf<'a> {
    pub scope: &'a str,
    pub caller: i64,
    pub key: &'a str,
}

/// A key as stored: the hash of the request it came with, and the response once recorded.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredKey {
    pub request_hash: String,
    pub status: Option<i32>,
    pub body: Option<String>,
    pub location: Option<String>,
}

/// Claims `key` for a request whose hash is `request_hash`; false when it was claimed before
/// (then [`find`] says by what). A concurrent claim of the same key waits for this
/// transaction.
pub async fn claim(tx: &mut Tx, key: KeyOf<'_>, request_hash: &str) -> sqlx::Result<bool> {
    let inserted = exec!(
        tx,
        "INSERT INTO idempotency_keys (scope, user_id, idem_key, request_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        key.scope,
        key.caller,
        key.key,
        request_hash,
        Utc::now()
    )?;
    Ok(inserted == 1)
}

/// Records the response of the request that claimed `key`, in its transaction.
pub async fn record(
    tx: &mut Tx,
    key: KeyOf<'_>,
    status: u16,
    body: &str,
    location: Option<&str>,
) -> sqlx::Result<()> {
    exec!(
        tx,
        "UPDATE idempotency_keys SET status = $4, body = $5, location = $6 \
         WHERE scope = $1 AND user_id = $2 AND idem_key = $3",
        key.scope,
        key.caller,
        key.key,
        i32::from(status),
        body,
        location
    )?;
    Ok(())
}

/// The claimed `key`.
pub async fn find(tx: &mut Tx, key: KeyOf<'_>) -> sqlx::Result<StoredKey> {
    on_tx!(tx, c => sqlx::query_as(
        "SELECT request_hash, status, body, location FROM idempotency_keys \
         WHERE scope = $1 AND user_id = $2 AND idem_key = $3",
    )
    .bind(key.scope)
    .bind(key.caller)
    .bind(key.key)
    .fetch_one(c)
    .await)
}

/// Forgets keys older than `older_than`; returns how many.
pub async fn prune(db: &Db, older_than: std::time::Duration) -> anyhow::Result<u64> {
    let before = Utc::now() - older_than;
    let mut tx = db.begin().await?;
    let deleted = exec!(
        tx,
        "DELETE FROM idempotency_keys WHERE created_at < $1",
        before
    )?;
    tx.commit().await?;
    Ok(deleted)
}
