//! User accounts.

mod authenticate;
mod create_admin;
mod find;
mod hashing;
mod password;
pub mod seed;
mod sign_up;

pub use authenticate::authenticate;
pub use create_admin::{create_admin, AdminCreated};
pub use find::find;
pub use hashing::{Hashing, HashingLimits, Overloaded, PasswordConfig};
pub use password::{hash_password, verify_password};
pub use sign_up::sign_up;

/// An account as other code sees it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
}

/// Why an account could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("an account with this email exists")]
    EmailTaken,
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Emails are compared and stored trimmed and lower-cased.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// An email address as sign-up takes it, for the OpenAPI document: one `@`, a dot inside the
/// domain, no blank or NUL; at most 254 characters.
pub const EMAIL_PATTERN: &str =
    r"^[^@ \t\n\r\x00]+@[^@ \t\n\r\x00.][^@ \t\n\r\x00]*\.[^@ \t\n\r\x00]*[^@ \t\n\r\x00.]$";

/// Checks the sign-up rules of the API: name 2–20 characters, password 5–30, an email address.
pub fn validate(name: &str, email: &str, password: &str) -> Result<(), UserError> {
    let invalid = |field, reason| Err(UserError::Invalid { field, reason });
    if !db::text::fits(name, 2, 20) {
        return invalid("name", "must be 2 to 20 characters, not all blank");
    }
    if !(5..=30).contains(&password.chars().count()) {
        return invalid("password", "must be 5 to 30 characters");
    }
    if !valid_email(email) {
        return invalid("email", "must be an email address");
    }
    Ok(())
}

/// The same rule as `EMAIL_PATTERN`.
fn valid_email(email: &str) -> bool {
    email.chars().count() <= 254
        && !email.contains([' ', '\t', '\n', '\r', '\0'])
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
}

/// The normalized email of a login, if the credentials could belong to an account at all: an
/// email address and a password as sign-up takes them. Checked before anything is counted or
/// stored under the email, so that its size is bounded.
pub fn login_email(email: &str, password: &str) -> Result<String, UserError> {
    let invalid = |field, reason| Err(UserError::Invalid { field, reason });
    if email.len() > 1_024 {
        return invalid("email", "must be an email address");
    }
    let email = normalize_email(email);
    if !valid_email(&email) {
        return invalid("email", "must be an email address");
    }
    if !(5..=30).contains(&password.chars().count()) {
        return invalid("password", "must be 5 to 30 characters");
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_published_email_pattern_says_what_validate_says() {
        let pattern = regex::Regex::new(super::EMAIL_PATTERN).unwrap();
        for email in [
            "a@b.co",
            "a.b@c.d.e",
            "a@b",
            "@b.co",
            "a@.b",
            "a@b.",
            "a@@b.co",
            "a b@c.de",
            "a@b.c\0",
            "ä@ö.ü",
            "a@b..c",
            "a\t@b.co",
        ] {
            let valid = super::validate("ab", email, "12345").is_ok();
            assert_eq!(pattern.is_match(email), valid, "{email:?}");
        }
    }

    use super::validate;

    #[test]
    fn a_login_that_no_account_could_match_is_refused_before_anything_else() {
        assert_eq!(super::login_email("  A@B.co ", "12345").unwrap(), "a@b.co");
        let huge = format!("{}@b.co", "a".repeat(60_000));
        for (email, password) in [
            (huge.as_str(), "12345"),
            ("ab.co", "12345"),
            ("a@b.co", "1234"),
            ("a@b.co", &"p".repeat(31)),
        ] {
            assert!(super::login_email(email, password).is_err(), "{email:.20}");
        }
    }

    #[test]
    fn sign_up_rules_hold_at_their_edges() {
        assert!(validate("ab", "a@b.co", "12345").is_ok());
        assert!(validate("a".repeat(20).as_str(), "a@b.co", &"p".repeat(30)).is_ok());
        assert!(validate("a", "a@b.co", "12345").is_err());
        assert!(validate("a".repeat(21).as_str(), "a@b.co", "12345").is_err());
        assert!(validate("ab", "a@b.co", "1234").is_err());
        assert!(validate("ab", "a@b.co", &"p".repeat(31)).is_err());
        for email in [
            "ab.co", "@b.co", "a@b", "a@.co", "a b@c.co", "a@b.co.", "a@b@c.co",
        ] {
            assert!(validate("ab", email, "12345").is_err(), "{email}");
        }
    }
}
