//! `Idempotency-Key` (`docs/api.md`, "Conventions"), for any POST whose effect runs in one database
//! transaction: the key is claimed and the response stored in that same transaction. A retry
//! with the same key and body gets the stored response and causes no second effect, even when
//! the duplicates arrive at once (the second waits on the first's key row); the same key with
//! another body is 422 `IDEMPOTENCY_KEY_REUSED`. Failed requests store nothing, so their retry
//! runs again. The keys are kept by `crate::idempotency`.

use axum::{
    extract::FromRequestParts,
    http::{header::LOCATION, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use db::{Db, Tx};
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::idempotency::{self as store, KeyOf, StoredKey};

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
            let key = KeyOf { scope, caller, key };
            let hash = hex(&Sha256::digest(
                serde_json::to_vec(request).map_err(ApiError::internal)?,
            ));
            if !store::claim(&mut tx, key, &hash)
                .await
                .map_err(ApiError::internal)?
            {
                return replay(&mut tx, key, &hash).await;
            }
            Some(key)
        }
    };
    let stored = effect(&mut tx).await?;
    if let Some(key) = claimed {
        let (status, body) = (stored.status.as_u16(), stored.body.to_string());
        store::record(&mut tx, key, status, &body, stored.location.as_deref())
            .await
            .map_err(ApiError::internal)?;
    }
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(stored.into_response(false))
}

/// The answer to a request whose key was claimed before: the recorded response, or why not.
async fn replay(tx: &mut Tx, key: KeyOf<'_>, hash: &str) -> Result<Response, ApiError> {
    let stored = store::find(tx, key).await.map_err(ApiError::internal)?;
    match stored {
        StoredKey { request_hash, .. } if request_hash != hash => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with another request",
        )),
        StoredKey {
            status: Some(status),
            body: Some(body),
            location,
            ..
        } => Ok(Stored {
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
