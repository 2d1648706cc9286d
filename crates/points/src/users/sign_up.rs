//! `POST /api/users`: a new account.

use chrono::Utc;
use db::{on_tx, sqlx, Db};

use super::{normalize_email, validate, Hashing, User, UserError};

/// Creates an account. The email is unique (case-insensitive): `EmailTaken` otherwise, also
/// when two sign-ups race. The password is stored only as an argon2id hash, made on one of
/// `hashing`'s threads (`Overloaded` when none frees up in time).
pub async fn sign_up(
    db: &Db,
    hashing: &Hashing,
    name: &str,
    email: &str,
    password: &str,
) -> Result<User, UserError> {
    validate(name, email, password)?;
    let (name, email) = (name.to_owned(), normalize_email(email));
    let hash = hashing.hash(password.to_owned()).await??;
    let mut tx = db.begin().await.map_err(anyhow::Error::from)?;
    let inserted = on_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO users (name, email, password_hash, is_admin, created_at) \
         VALUES ($1, $2, $3, FALSE, $4) RETURNING id",
    )
    .bind(&name)
    .bind(&email)
    .bind(&hash)
    .bind(Utc::now())
    .fetch_one(c)
    .await);
    let id = match inserted {
        Ok(id) => id,
        Err(e) if db::is_unique_violation(&e) => return Err(UserError::EmailTaken),
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(User {
        id,
        name,
        email,
        is_admin: false,
    })
}
