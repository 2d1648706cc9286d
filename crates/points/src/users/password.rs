//! Password hashing: argon2id with a random salt, stored in PHC string format.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

/// Hashes `password` with argon2id and a fresh salt (slow on purpose: run it off the async
/// threads, e.g. in `spawn_blocking`, on hot paths).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// True when `password` matches the stored `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("s3cret!").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("s3cret!", &hash));
        assert!(!verify_password("s3cret?", &hash));
        assert_ne!(hash, hash_password("s3cret!").unwrap(), "salted");
    }
}
