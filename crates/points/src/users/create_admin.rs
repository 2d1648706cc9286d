//! `stampede admin create`: creates an admin account, or promotes an existing one.

use chrono::Utc;
use db::{exec, on_tx, sqlx, Db};

use super::{hash_password, validate, UserError};

/// What `create_admin` did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminCreated {
    Created {
        id: i64,
    },
    /// The email belonged to an account already: it is now an admin, with the new password.
    Promoted {
        id: i64,
    },
}

/// Creates an admin with `email` and `password`, or promotes (and re-keys) the account that
/// has that email. Idempotent: running it twice leaves one admin account.
pub async fn create_admin(
    db: &Db,
    email: &str,
    password: &str,
    name: &str,
) -> Result<AdminCreated, UserError> {
    let email = super::normalize_email(email);
    validate(name, &email, password)?;
    let hash = hash_password(password)?;
    let mut tx = db.begin().await.map_err(anyhow::Error::from)?;
    let existing: Option<i64> =
        on_tx!(tx, c => sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(c)
        .await)
        .map_err(anyhow::Error::from)?;
    let outcome = match existing {
        Some(id) => {
            exec!(
                tx,
                "UPDATE users SET is_admin = TRUE, password_hash = $1 WHERE id = $2",
                &hash,
                id
            )
            .map_err(anyhow::Error::from)?;
            AdminCreated::Promoted { id }
        }
        None => {
            let id = on_tx!(tx, c => sqlx::query_scalar(
                "INSERT INTO users (name, email, password_hash, is_admin, created_at) \
                 VALUES ($1, $2, $3, TRUE, $4) RETURNING id",
            )
            .bind(name)
            .bind(&email)
            .bind(&hash)
            .bind(Utc::now())
            .fetch_one(c)
            .await)
            .map_err(anyhow::Error::from)?;
            AdminCreated::Created { id }
        }
    };
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creating_an_admin_twice_promotes_the_same_account() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/u.db", dir.path().display()), None)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let first = create_admin(&db, "Root@Example.com", "hunter22", "root")
            .await
            .unwrap();
        let AdminCreated::Created { id } = first else {
            panic!("expected a new account, got {first:?}")
        };
        let again = create_admin(&db, "root@example.com", "other-pass", "root")
            .await
            .unwrap();
        assert_eq!(again, AdminCreated::Promoted { id });
        let (hash, admin): (String, bool) = db::on_db!(&db, c => sqlx::query_as(
            "SELECT password_hash, is_admin FROM users WHERE id = $1"
        ).bind(id).fetch_one(c).await)
        .unwrap();
        assert!(admin);
        assert!(super::super::verify_password("other-pass", &hash));
        assert!(matches!(
            create_admin(&db, "not-an-email", "hunter22", "root").await,
            Err(UserError::Invalid { field: "email", .. })
        ));
    }
}
