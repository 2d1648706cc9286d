//! `POST /api/auth/token`: checking a password.

use db::{on_db, sqlx, Db};

use super::{normalize_email, Hashing, User, UserError};

/// A hash of nothing in particular, verified when the email is unknown so that a wrong email
/// takes as long as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$u8YBSYBFjRwpSHzT1xCsgJIbwfoHkbXyGC7UpCVE2Mw";

/// The account with `email` if `password` is its password; `None` otherwise (whichever of the
/// two was wrong). The check runs on one of `hashing`'s threads (`Overloaded` when none frees
/// up in time).
pub async fn authenticate(
    db: &Db,
    hashing: &Hashing,
    email: &str,
    password: &str,
) -> Result<Option<User>, UserError> {
    let email = normalize_email(email);
    // No account's email holds a NUL (sign-up refuses it), and PostgreSQL cannot compare one.
    #[derive(sqlx::FromRow)]
    struct Account {
        id: i64,
        name: String,
        email: String,
        is_admin: bool,
        password_hash: String,
    }
    let account: Option<Account> = if email.contains('\0') {
        None
    } else {
        on_db!(db, c => sqlx::query_as(
            "SELECT id, name, email, is_admin, password_hash FROM users WHERE email = $1",
        )
        .bind(&email)
        .fetch_optional(c)
        .await)
        .map_err(anyhow::Error::from)?
    };
    let hash = account
        .as_ref()
        .map_or(DECOY_HASH.to_owned(), |a| a.password_hash.clone());
    let matches = hashing.verify(password.to_owned(), hash).await?;
    Ok(account.filter(|_| matches).map(|a| User {
        id: a.id,
        name: a.name,
        email: a.email,
        is_admin: a.is_admin,
    }))
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHash;

    use super::DECOY_HASH;

    #[test]
    fn the_decoy_hash_is_a_real_argon2id_hash_so_unknown_emails_cost_a_verification() {
        let parsed = PasswordHash::new(DECOY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
