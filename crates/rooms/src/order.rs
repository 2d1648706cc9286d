//! The order of the places taken before a room opens: ascending SHA-256 of the room's seed
//! bytes followed by the user id in decimal ASCII. The seed is drawn when the room is created
//! and published once it opens, so anyone can recompute the order, and nobody can know it
//! before: arriving early buys a place in the shuffle, not the front of the line.

use sha2::{Digest, Sha256};

/// A room's shuffle seed: 32 bytes, published as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    /// A seed from `bytes` of a good random source (the caller's: the database and the
    /// operating system are not this module's).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh seed from the operating system's random source (two version-4 UUIDs: 244
    /// random bits).
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(bytes)
    }

    /// The seed as published: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The seed from its 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// `user`'s key in the shuffle: SHA-256(seed bytes ‖ user id as decimal ASCII).
    pub fn key(&self, user: i64) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.0);
        hash.update(user.to_string().as_bytes());
        hash.finalize().into()
    }

    /// `users` in their shuffled order (ties, which SHA-256 makes impossible in practice, by
    /// user id).
    pub fn shuffle(&self, users: &mut [i64]) {
        users.sort_by_cached_key(|user| (self.key(*user), *user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_recomputed_from_the_published_seed_alone() {
        let seed = Seed::from_bytes([7; 32]);
        let published = seed.to_hex();
        assert_eq!(published.len(), 64);
        let mut joined: Vec<i64> = (1..=1_000).collect();
        seed.shuffle(&mut joined);
        let mut recomputed: Vec<i64> = (1..=1_000).rev().collect();
        Seed::from_hex(&published).unwrap().shuffle(&mut recomputed);
        assert_eq!(
            joined, recomputed,
            "the same order whatever the order of arrival"
        );
        assert_ne!(
            joined,
            (1..=1_000).collect::<Vec<_>>(),
            "not the order of ids"
        );
        let first_half_early = joined[..500].iter().filter(|u| **u <= 500).count();
        assert!(
            (200..=300).contains(&first_half_early),
            "{first_half_early}"
        );
    }

    #[test]
    fn a_key_is_sha256_of_the_seed_then_the_decimal_user_id() {
        // sha256(32 zero bytes ‖ "42"), computed independently (Python's hashlib).
        let key = Seed::from_bytes([0; 32]).key(42);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "f8b22fc7663292a71a94c45e845d667ad86d0b6008132a647caf667ad71b3644"
        );
        assert!(Seed::from_hex("zz").is_none());
        assert!(Seed::from_hex(&"g".repeat(64)).is_none());
    }
}
