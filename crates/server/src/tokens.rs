//! Access tokens (HS256 JWTs): signing, verifying, and the deployment's secret. What a valid
//! token says is a [`Caller`]; the HTTP layer (`http/auth.rs`) extracts and authorizes it.

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use db::{exec, on_db, sqlx, Db};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

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

    /// Who `token` was issued to; `None` unless it was signed with this secret and has not
    /// expired.
    pub fn verify(&self, token: &str) -> Option<Caller> {
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

/// The holder of a valid token: the authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: i64,
    pub is_admin: bool,
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
}
