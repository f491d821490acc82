//! Redis Cluster's key -> hash slot mapping, shared by the cluster tests and
//! the benchmark (both check it against the server's `CLUSTER KEYSLOT`).

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM, the checksum of Redis Cluster's key -> slot mapping.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
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

/// The hash slot of a key, as the server computes it: only the part between
/// the first `{` and the next `}` is hashed when it is not empty (a hash tag).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => {
            let after = key.get(open + 1..).unwrap_or(&[]);
            match after.iter().position(|&b| b == b'}') {
                Some(len) if len > 0 => after.get(..len).unwrap_or(key),
                _ => key,
            }
        }
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// Known answers of `CLUSTER KEYSLOT` (Redis documentation and redis-cli).
pub const KNOWN_SLOTS: &[(&str, u16)] = &[
    ("123456789", 12739),
    ("foo", 12182),
    ("bar", 5061),
    ("hello", 866),
    ("{user1000}.following", 3443),
    ("{user1000}.followers", 3443),
    ("foo{}{bar}", 8363),
    ("foo{{bar}}zap", 4015),
    ("foo{bar}{zap}", 5061),
    ("", 0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_of_cluster_keyslot() {
        for (key, slot) in KNOWN_SLOTS {
            assert_eq!(key_slot(key.as_bytes()), *slot, "{key:?}");
        }
    }
}
