//! Bearer tokens and authorization, enforced in one place: the [`Caller`] extractor answers
//! 401 for a missing, invalid or expired token; [`Caller::user`] answers 403 for another
//! user's resource (admins may act on any user); [`Caller::require_admin`] guards admin routes.

use std::time::Duration;

use anyhow::Context as _;
use axum::{extract::FromRequestParts, http::request::Parts, http::StatusCode};
use chrono::Utc;
use db::{exec, on_db, sqlx, Db};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::error::{path_id, ApiError};
use crate::{config::Settings, state::AppState};

/// Signs and checks access tokens (HS256).
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    adm: bool,
    iat: i64,
    exp: i64,
}

impl Tokens {
    /// Uses `STAMPEDE_JWT_SECRET` when set. Otherwise the deployment's own secret, generated once
    /// and kept in its database (the SQLite file in the data directory on the embedded default),
    /// so tokens survive restarts and every instance accepts every other's tokens.
    pub async fn load(settings: &Settings, db: &Db) -> anyhow::Result<Self> {
        let secret = match &settings.jwt_secret {
            Some(secret) => secret.expose_secret().to_owned(),
            None => stored_secret(db).await.context("the token secret")?,
        };
        anyhow::ensure!(
            secret.len() >= 16,
            "STAMPEDE_JWT_SECRET must be at least 16 characters"
        );
        Ok(Self::from_secret(
            secret.as_bytes(),
            Duration::from_secs(settings.token_ttl_secs),
        ))
    }

    pub fn from_secret(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A token for `user_id`, and the seconds until it expires.
    pub fn issue(&self, user_id: i64, is_admin: bool) -> anyhow::Result<(String, u64)> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            adm: is_admin,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, self.ttl.as_secs()))
    }

    fn verify(&self, token: &str) -> Option<Caller> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        Some(Caller {
            user_id: claims.sub.parse().ok()?,
            is_admin: claims.adm,
        })
    }
}

async fn stored_secret(db: &Db) -> anyhow::Result<String> {
    let candidate = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut tx = db.begin().await?;
    exec!(
        tx,
        "INSERT INTO app_secrets (name, value) VALUES ('jwt', $1) ON CONFLICT DO NOTHING",
        &candidate
    )?;
    tx.commit().await?;
    Ok(
        on_db!(db, c => sqlx::query_scalar("SELECT value FROM app_secrets WHERE name = 'jwt'")
        .fetch_one(c)
        .await)?,
    )
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: i64,
    pub is_admin: bool,
}

impl Caller {
    /// The user named by a `{userId}` path segment (`me` or an id) if the caller may act on
    /// them: themselves, or anyone for an admin. 403 `FORBIDDEN` otherwise.
    pub fn user(&self, segment: &str) -> Result<i64, ApiError> {
        let user_id = if segment == "me" {
            self.user_id
        } else {
            path_id(segment, "user")?
        };
        if user_id == self.user_id || self.is_admin {
            Ok(user_id)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this resource belongs to another user",
            ))
        }
    }

    /// 403 `FORBIDDEN` unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "admins only",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(unauthorized)?;
        state.tokens.verify(token.trim()).ok_or_else(unauthorized)
    }
}

/// An admin caller: 401 without a valid token, 403 for anyone else, decided before the body
/// is read.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Self(caller))
    }
}

/// 401 `UNAUTHORIZED`: no token, or not a valid one.
fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "a valid bearer token is required",
    )
}

/// The caller of a stream route: the bearer token, or else the `access_token` query parameter,
/// since a browser's `EventSource` cannot send headers.
pub struct StreamCaller(pub Caller);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            let query =
                axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
                    &parts.uri,
                );
            if let Some(token) = query.ok().and_then(|q| q.0.get("access_token").cloned()) {
                return state
                    .tokens
                    .verify(&token)
                    .map(Self)
                    .ok_or_else(unauthorized);
            }
        }
        Caller::from_request_parts(parts, state).await.map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_secret_and_before_expiry() {
        let tokens = Tokens::from_secret(b"0123456789abcdef0123", Duration::from_secs(60));
        let (token, expires_in) = tokens.issue(42, true).unwrap();
        assert_eq!(expires_in, 60);
        let caller = tokens.verify(&token).unwrap();
        assert_eq!((caller.user_id, caller.is_admin), (42, true));
        let other = Tokens::from_secret(b"another-secret-of-20", Duration::from_secs(60));
        assert!(other.verify(&token).is_none());
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "42".into(),
                adm: false,
                iat: 0,
                exp: Utc::now().timestamp() - 1,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert!(tokens.verify(&expired).is_none());
        assert!(tokens.verify("not.a.token").is_none());
    }

    #[test]
    fn callers_reach_themselves_and_admins_reach_anyone() {
        let user = Caller {
            user_id: 7,
            is_admin: false,
        };
        assert_eq!(user.user("me").unwrap(), 7);
        assert_eq!(user.user("7").unwrap(), 7);
        assert_eq!(user.user("8").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(user.user("abc").unwrap_err().status, StatusCode::NOT_FOUND);
        assert_eq!(
            user.require_admin().unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let admin = Caller {
            user_id: 1,
            is_admin: true,
        };
        assert_eq!(admin.user("8").unwrap(), 8);
        assert!(admin.require_admin().is_ok());
    }
}
