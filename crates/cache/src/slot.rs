//! Which Redis Cluster slot a key lives in: CRC16 (XMODEM) of the key's hash tag (the part
//! between the first `{` and the next `}`, when not empty) or of the whole key, modulo 16,384.
//! A script may touch several keys only if they share a slot; [`crate::RedisCache::script`]
//! checks it in debug builds, so every adapter test is also a test of the key layout.

/// The slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The cluster slot of `key`.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// Whether `keys` all live in one slot (as one script's keys must on a cluster).
pub(crate) fn one_slot<K: AsRef<[u8]>>(keys: &[K]) -> bool {
    keys.windows(2)
        .all(|pair| slot(pair[0].as_ref()) == slot(pair[1].as_ref()))
}

/// The part of `key` that is hashed.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_the_cluster_specification_gives() {
        // The specification's CRC16 check value, and slots `redis-cli CLUSTER KEYSLOT` prints.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"bar"), 5_061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"p:coupon:{c:7}:users"), slot(b"c:7"));
        // An empty tag, or a brace never closed, hashes the whole key.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot(b"foo{bar"), crc16(b"foo{bar") % SLOTS);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn keys_of_one_hash_tag_share_a_slot_and_others_need_not() {
        assert!(one_slot(&[
            "p:coupon:{c:1}",
            "p:coupon:{c:1}:users",
            "p:coupon:{c:1}:takes"
        ]));
        assert!(!one_slot(&["p:coupon:{c:1}", "p:coupon:{c:2}"]));
        assert!(one_slot::<&str>(&[]));
    }
}
