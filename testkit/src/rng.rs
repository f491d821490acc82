//! One seeded pseudo-random generator (SplitMix64) for the tests and the
//! benchmark: random key names, random buckets, random load. Not for
//! anything that needs real randomness.

use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable that fixes the seed of [`Rng::new`], to replay a run.
pub const SEED_ENV: &str = "SHIELD_TEST_SEED";

/// SplitMix64: small, fast, and every seed (0 included) gives a good stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A test's generator: seeded from `SHIELD_TEST_SEED` when it is set
    /// (decimal or `0x` hex), else from the clock. The seed is printed (to
    /// the test's captured stderr, which the test harness shows when the test
    /// fails) so that a failure can be replayed with the same random choices.
    /// Threads of one test take their own generator with [`Rng::split`], so
    /// that one seed replays them all.
    pub fn new() -> Rng {
        let seed = match std::env::var(SEED_ENV) {
            Ok(s) if !s.trim().is_empty() => parse_seed(&s)
                .unwrap_or_else(|| panic!("{SEED_ENV}={s:?} is not a decimal or 0x-hex u64")),
            _ => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                nanos ^ (u64::from(std::process::id()) << 32)
            }
        };
        eprintln!("random seed {seed} (replay with {SEED_ENV}={seed})");
        Rng::from_seed(seed)
    }

    /// A generator with exactly this seed (reproducible, nothing printed).
    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A new generator whose seed is drawn from this one: for the threads of
    /// a test, so that they do not repeat each other's choices.
    pub fn split(&mut self) -> Rng {
        Rng::from_seed(self.next_u64())
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..n` (`n > 0`; multiply-shift, no division).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_below_stays_below() {
        let (mut a, mut b) = (Rng::from_seed(42), Rng::from_seed(42));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(7) < 7);
            b.below(7);
        }
        assert_ne!(a.split().next_u64(), a.next_u64());
        assert_eq!(parse_seed("0x10"), Some(16));
        assert_eq!(parse_seed(" 17 "), Some(17));
        assert_eq!(parse_seed("x"), None);
    }
}
