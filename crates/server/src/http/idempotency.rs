//! `Idempotency-Key` (`docs/api.md`, "Conventions"), for any POST whose effect runs in one database
//! transaction: the key is claimed and the response stored in that same transaction. A retry
//! with the same key and body gets the stored response and causes no second effect, even when
//! the duplicates arrive at once (the second waits on the first's key row); the same key with
//! another body is 422 `IDEMPOTENCY_KEY_REUSED`. Failed requests store nothing, so their retry
//! runs again.

use axum::{
    extract::FromRequestParts,
    http::{header::LOCATION, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use db::{exec, on_tx, sqlx, Db, Tx};
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The request's `Idempotency-Key`, if it sent one (1–255 characters).
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let value = value
            .to_str()
            .ok()
            .filter(|v| {
                v.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
                    && !v.starts_with(' ')
                    && !v.ends_with(' ')
            })
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key: must be visible ASCII and spaces between")
            })?;
        if value.is_empty() || value.len() > 255 {
            return Err(ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 characters",
            ));
        }
        Ok(Self(Some(value.to_owned())))
    }
}

/// A response as stored for replays.
pub struct Stored {
    pub status: StatusCode,
    pub body: serde_json::Value,
    /// The `Location` header, for a response that created something.
    pub location: Option<String>,
}

impl Stored {
    pub fn new(status: StatusCode, body: impl Serialize) -> Result<Self, ApiError> {
        Ok(Self {
            status,
            body: serde_json::to_value(body).map_err(ApiError::internal)?,
            location: None,
        })
    }

    pub fn located(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(location) = self.location.and_then(|l| HeaderValue::try_from(l).ok()) {
            response.headers_mut().insert(LOCATION, location);
        }
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// Runs `effect` in a transaction, at most once per (`scope`, `caller`, key) when a key was
/// sent. `request` is everything that identifies the request (path ids and body).
pub async fn once<R: Serialize>(
    db: &Db,
    key: &IdempotencyKey,
    scope: &str,
    caller: i64,
    request: &R,
    effect: impl for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<Stored, ApiError>>,
) -> Result<Response, ApiError> {
    let mut tx = db.begin().await.map_err(ApiError::internal)?;
    let claimed = match &key.0 {
        None => None,
        Some(key) => {
            let hash = hex(&Sha256::digest(
                serde_json::to_vec(request).map_err(ApiError::internal)?,
            ));
            let inserted = exec!(
                tx,
                "INSERT INTO idempotency_keys (scope, user_id, idem_key, request_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                scope,
                caller,
                key,
                &hash,
                Utc::now()
            )
            .map_err(ApiError::internal)?;
            if inserted == 0 {
                return replay(&mut tx, scope, caller, key, &hash).await;
            }
            Some(key)
        }
    };
    let stored = effect(&mut tx).await?;
    if let Some(key) = claimed {
        exec!(
            tx,
            "UPDATE idempotency_keys SET status = $4, body = $5, location = $6 \
             WHERE scope = $1 AND user_id = $2 AND idem_key = $3",
            scope,
            caller,
            key,
            i32::from(stored.status.as_u16()),
            stored.body.to_string(),
            stored.location.as_deref()
        )
        .map_err(ApiError::internal)?;
    }
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(stored.into_response(false))
}

async fn replay(
    tx: &mut Tx,
    scope: &str,
    caller: i64,
    key: &str,
    hash: &str,
) -> Result<Response, ApiError> {
    let row: (String, Option<i32>, Option<String>, Option<String>) =
        on_tx!(tx, c => sqlx::query_as(
        "SELECT request_hash, status, body, location FROM idempotency_keys \
         WHERE scope = $1 AND user_id = $2 AND idem_key = $3",
    )
    .bind(scope)
    .bind(caller)
    .bind(key)
    .fetch_one(c)
    .await)
        .map_err(ApiError::internal)?;
    match row {
        (stored_hash, _, _, _) if stored_hash != hash => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with another request",
        )),
        (_, Some(status), Some(body), location) => Ok(Stored {
            status: StatusCode::from_u16(status as u16).map_err(ApiError::internal)?,
            body: serde_json::from_str(&body).map_err(ApiError::internal)?,
            location,
        }
        .into_response(true)),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "REQUEST_IN_PROGRESS",
            "a request with this Idempotency-Key is still being processed",
        )),
    }
}

/// How long keys are remembered: the contract promises at least 24 hours.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(48 * 3600);

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
