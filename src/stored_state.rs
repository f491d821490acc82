//! How a bucket lives in the keyspace: one string key per bucket.
//!
//! The key's **absolute expiry** is the bucket's full-again moment, rounded
//! *up* to the server's millisecond: the key disappears when the bucket is
//! full (so idle buckets cost nothing) and never earlier (a key that vanished
//! early would hand out a fraction of a token too soon).
//!
//! The **value** says how far before that millisecond the true full-again
//! moment lies, in ticks of `1/capacity` ms:
//! - `~0`: exactly at the expiry millisecond. With the usual parameters
//!   (`period * 1000` a multiple of `capacity`) this is always the value, and
//!   it means the same for every capacity.
//! - `~<remainder>/<capacity>`: `remainder` ticks of `1/capacity` ms before it
//!   (`0 < remainder < capacity`). The capacity is stored with the remainder,
//!   so a call with another capacity converts it exactly, rounding towards a
//!   later full-again moment (fewer tokens, never more).
//! - `~<remainder>` with no capacity (written by pre-release 2.0 builds): the
//!   capacity it was counted in is unknown, so it is read as `~0`: at most
//!   one millisecond of refill later than the truth, never earlier.
//!
//! A value that is a plain decimal integer was written by redis-shield 1.x:
//! the number of tokens left, in a key whose TTL was the period. It is read as
//! that many tokens available at the moment of the read. That reading depends
//! on when it is made, so it is not a state: the first call that may write
//! (an absorb, admitted **or denied**) stores it in the 2.x form
//! ([`Decoded::rewrite`]), and refill runs from that moment on.

use crate::bucket::{div_ceil, Limit, Ticks};
use crate::error::ShieldError;

const TAG: u8 = b'~';
const OVER: u8 = b'/';

/// The longest value 2.x writes: the tag, a remainder (below the capacity:
/// at most 15 digits), the slash and a capacity (at most 16 digits), with
/// room to spare.
pub const MAX_VALUE_LEN: usize = 40;

/// A stored state ready to be written: the value bytes and the absolute
/// expiry in milliseconds. Lives on the stack: encoding allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    buf: [u8; MAX_VALUE_LEN],
    len: usize,
    pub expire_at_ms: i64,
}

impl Encoded {
    pub fn value(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// A stack buffer for the decimal digits of a `u64` (at most 20).
#[derive(Default)]
pub struct Decimal([u8; 20]);

impl Decimal {
    /// The decimal digits of `n`, without allocating (two digits per
    /// division: this runs for every replicated write).
    pub fn format(&mut self, mut n: u64) -> &[u8] {
        const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";
        let mut start = self.0.len();
        while n >= 100 && start >= 2 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            start -= 2;
            if let (Some(dst), Some(src)) =
                (self.0.get_mut(start..start + 2), PAIRS.get(pair..pair + 2))
            {
                dst.copy_from_slice(src);
            }
        }
        // n < 100 now: one or two digits left.
        if n >= 10 && start >= 2 {
            let pair = n as usize * 2;
            start -= 2;
            if let (Some(dst), Some(src)) =
                (self.0.get_mut(start..start + 2), PAIRS.get(pair..pair + 2))
            {
                dst.copy_from_slice(src);
            }
        } else if let Some(d) = start.checked_sub(1).and_then(|i| self.0.get_mut(i)) {
            *d = b'0' + n as u8;
            start -= 1;
        }
        self.0.get(start..).unwrap_or(&[])
    }
}

/// Encodes a full-again tick (which must be in the future of the last write,
/// so the expiry is a real instant).
pub fn encode(limit: &Limit, full_at: Ticks) -> Result<Encoded, ShieldError> {
    let per_ms = limit.ticks_per_ms();
    let expire_at = div_ceil(full_at, per_ms);
    let remainder = expire_at * per_ms - full_at;
    let expire_at_ms =
        i64::try_from(expire_at).map_err(|_| ShieldError::Storage("encode the expiry of"))?;
    let remainder = u64::try_from(remainder).map_err(|_| ShieldError::Storage("encode"))?;
    let mut buf = [TAG; MAX_VALUE_LEN];
    let mut len = 1;
    let mut push = |bytes: &[u8]| -> Result<(), ShieldError> {
        let dst = buf
            .get_mut(len..len + bytes.len())
            .ok_or(ShieldError::Storage("encode"))?;
        dst.copy_from_slice(bytes);
        len += bytes.len();
        Ok(())
    };
    let mut digits = Decimal::default();
    push(digits.format(remainder))?;
    if remainder != 0 {
        // remainder < capacity <= 10^15: 15 + 1 + 16 bytes at most.
        push(&[OVER])?;
        push(digits.format(limit.capacity()))?;
    }
    Ok(Encoded {
        buf,
        len,
        expire_at_ms,
    })
}

/// A stored bucket, decoded for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The full-again tick, in the ticks of the caller's limit.
    pub full_at: Ticks,
    /// True for a 1.x value that is not full: its reading depends on the
    /// moment it is read, so a call that may write must store `full_at` in
    /// the 2.x form even when it takes nothing (refill then runs from here).
    pub rewrite: bool,
}

/// Decodes a stored bucket into its full-again tick.
///
/// `expire_at_ms` is the key's absolute expiry (`None`: the key has none),
/// `now` the current tick (used for 1.x values only).
pub fn decode(
    limit: &Limit,
    value: &[u8],
    expire_at_ms: Option<i64>,
    now: Ticks,
) -> Result<Decoded, ShieldError> {
    match value.split_first() {
        Some((&TAG, rest)) => {
            let before_expiry = remainder_ticks(limit, rest).ok_or(ShieldError::NotABucket)?;
            let expire_at = expire_at_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .ok_or(ShieldError::BadExpiry)?;
            Ok(Decoded {
                full_at: limit.ms_to_ticks(expire_at) - before_expiry,
                rewrite: false,
            })
        }
        _ => {
            let tokens_left = parse_legacy(value).ok_or(ShieldError::NotABucket)?;
            let available = tokens_left.clamp(0, i128::from(limit.capacity()));
            let missing = i128::from(limit.capacity()) - available;
            // 0 <= missing <= capacity.
            let missing = Ticks::try_from(missing).unwrap_or(0);
            Ok(Decoded {
                full_at: now + missing * limit.interval(),
                rewrite: missing > 0,
            })
        }
    }
}

/// The ticks (of `limit`) by which the full-again moment precedes the expiry
/// millisecond, from the part of a 2.x value after the tag; always below one
/// millisecond (`< limit.ticks_per_ms()`). `None`: not a 2.x value.
fn remainder_ticks(limit: &Limit, rest: &[u8]) -> Option<Ticks> {
    let (remainder, capacity) = match rest.iter().position(|&b| b == OVER) {
        Some(slash) => {
            let (remainder, capacity) = rest.split_at(slash);
            let capacity = parse_digits(capacity.get(1..)?)?;
            (parse_digits(remainder)?, Some(capacity))
        }
        None => (parse_digits(rest)?, None),
    };
    let remainder = Ticks::from(remainder);
    match capacity {
        // Written with this capacity (the usual case): exact.
        Some(c) if Ticks::from(c) == limit.ticks_per_ms() && remainder < limit.ticks_per_ms() => {
            Some(remainder)
        }
        // remainder/c ms in ticks of 1/new ms, rounded down: the full-again
        // moment lands on or after the true one, less than a tick later.
        Some(c) if remainder < Ticks::from(c) => {
            Some(remainder * limit.ticks_per_ms() / Ticks::from(c))
        }
        Some(_) => None,
        // No capacity: `~0` is exact for any capacity; a pre-release `~r`
        // is read as `~0` (later, never earlier).
        None => Some(0),
    }
}

/// Plain ASCII digits (at least one, leading zeros allowed), no sign.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A 1.x value: a decimal integer, possibly negative (a 1.x counter that
/// went below zero counts as empty).
fn parse_legacy(value: &[u8]) -> Option<i128> {
    match value.split_first() {
        Some((b'-', digits)) => parse_digits(digits).map(|d| -i128::from(d)),
        _ => parse_digits(value).map(i128::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::{absorb, level, Decision, MAX_CAPACITY};
    use crate::testing::Rng;

    fn lim(c: u64, p: u64) -> Limit {
        Limit::new(c, p).expect("valid")
    }

    #[test]
    fn round_trips_exactly_with_expiry_rounded_up() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let capacity = 1 + rng.below(MAX_CAPACITY);
            let limit = lim(capacity, 1 + rng.below(1_000_000));
            let now = limit.ms_to_ticks(1_700_000_000_000 + rng.below(1 << 30));
            let full_at = now + 1 + rng.below_u128(limit.burst());
            let enc = encode(&limit, full_at).expect("encodes");
            let expire = limit.ms_to_ticks(enc.expire_at_ms as u64);
            assert!(expire >= full_at, "expiry never before the full moment");
            assert!(
                expire - full_at < limit.ticks_per_ms(),
                "and less than 1 ms after"
            );
            assert_eq!(
                decode(&limit, enc.value(), Some(enc.expire_at_ms), now),
                Ok(Decoded {
                    full_at,
                    rewrite: false
                })
            );
        }
    }

    #[test]
    fn decimal_digits() {
        let mut rng = Rng::new(3);
        let samples = (0..10_000).map(|_| rng.next_u64() >> rng.below(64));
        for n in [0, 7, 10, 99, 100, 101, 1_000_000_000_000_000, u64::MAX]
            .into_iter()
            .chain(samples)
        {
            let mut d = Decimal::default();
            assert_eq!(d.format(n), n.to_string().as_bytes());
        }
    }

    #[test]
    fn usual_parameters_store_tilde_zero() {
        let limit = lim(30, 60);
        let now = limit.ms_to_ticks(1_000);
        let Decision::Admitted { full_at, .. } = absorb(&limit, None, now, 13) else {
            panic!("admitted")
        };
        let enc = encode(&limit, full_at).expect("encodes");
        assert_eq!(enc.value(), b"~0");
        assert_eq!(enc.expire_at_ms, 1_000 + 26_000);
    }

    #[test]
    fn values_that_are_not_buckets() {
        let limit = lim(10, 1);
        for v in [
            &b""[..],
            b"~",
            b"~x",
            b"~-1",
            b"~1.5",
            b"abc",
            b"1.5",
            b"--1",
            b"\xff",
            b" 1",
            b"~1/",
            b"~/5",
            b"~1/0",
            b"~5/5",
            b"~7/5",
            b"~1/2/3",
            b"~1/x",
        ] {
            assert_eq!(
                decode(&limit, v, Some(5), 0),
                Err(ShieldError::NotABucket),
                "{v:?}"
            );
        }
        assert_eq!(decode(&limit, b"~0", None, 0), Err(ShieldError::BadExpiry));
    }

    #[test]
    fn legacy_values_are_tokens_left_now() {
        let limit = lim(10, 10);
        let now = limit.ms_to_ticks(50_000);
        let at = |v: &[u8]| {
            let d = decode(&limit, v, Some(55_000), now).expect("legacy");
            (level(&limit, Some(d.full_at), now).available, d.rewrite)
        };
        // Not full: the reading depends on `now`, so it must be stored.
        assert_eq!(at(b"7"), (7, true));
        assert_eq!(at(b"0"), (0, true));
        assert_eq!(at(b"-3"), (0, true));
        // Full whenever it is read: nothing to store.
        assert_eq!(at(b"10"), (10, false));
        assert_eq!(at(b"999"), (10, false));
        // Once stored, refill runs at the bucket's rate: 1 token/s.
        let full_at = decode(&limit, b"7", None, now).expect("legacy").full_at;
        let later = limit.ms_to_ticks(51_000);
        assert_eq!(level(&limit, Some(full_at), later).available, 8);
    }

    #[test]
    fn a_remainder_carries_its_capacity() {
        // 3 tokens per 7 s: one token is 2333 2/3 ms, 2 ticks before 2334.
        let limit = lim(3, 7);
        let Decision::Admitted { full_at, .. } = absorb(&limit, None, 0, 1) else {
            panic!("admitted")
        };
        let enc = encode(&limit, full_at).expect("encodes");
        assert_eq!((enc.value(), enc.expire_at_ms), (&b"~2/3"[..], 2_334));
        // The longest value: a remainder of 15 digits over a capacity of 16.
        let max = lim(MAX_CAPACITY, 7);
        let enc =
            encode(&max, max.ms_to_ticks(5) - Ticks::from(MAX_CAPACITY - 1)).expect("encodes");
        assert_eq!(enc.value(), b"~999999999999999/1000000000000000");
        assert!(enc.value().len() <= MAX_VALUE_LEN);
        // A pre-release value without its capacity reads as `~0`.
        let d = decode(&limit, b"~2", Some(2_334), 0).expect("decodes");
        assert_eq!(d.full_at, limit.ms_to_ticks(2_334));
    }

    /// The case from the field: a remainder written with capacity 10^15 and
    /// read with 10^9 used to be clamped to 10^9 - 1 ticks (almost 1 ms, 9 990
    /// tokens of this bucket) instead of the 999 ticks it stands for.
    #[test]
    fn a_smaller_capacity_reads_the_remainder_exactly() {
        let old = lim(1_000_000_000_000_000, 1_000);
        let new = lim(1_000_000_000, 100);
        let now_ms = 1_700_000_000_000;
        let Decision::Admitted { full_at, .. } =
            absorb(&old, None, old.ms_to_ticks(now_ms), 59_999_999_999_001)
        else {
            panic!("admitted")
        };
        let enc = encode(&old, full_at).expect("encodes");
        assert_eq!(enc.value(), b"~999000000/1000000000000000");
        let d = decode(&new, enc.value(), Some(enc.expire_at_ms), 0).expect("decodes");
        assert_eq!(d.full_at, new.ms_to_ticks(enc.expire_at_ms as u64) - 999);
        let now = new.ms_to_ticks(now_ms);
        let tokens = level(&new, Some(d.full_at), now).available;
        let without_remainder = level(&new, Some(new.ms_to_ticks(enc.expire_at_ms as u64)), now);
        assert!(tokens <= without_remainder.available + 1, "{tokens}");
    }

    /// Any capacity change: the re-read full-again moment is never before
    /// the true one (no token appears) and less than one new tick after it;
    /// with the same capacity it is exact.
    #[test]
    fn a_capacity_change_never_moves_the_full_again_moment_earlier() {
        let mut rng = Rng::new(11);
        for i in 0..20_000 {
            let magnitude = |rng: &mut Rng| {
                let digits = 1 + rng.below(15) as u32;
                1 + rng.below(10u64.pow(digits))
            };
            let old = lim(magnitude(&mut rng).min(MAX_CAPACITY), 1 + rng.below(10_000));
            let new = if i % 4 == 0 {
                old
            } else {
                lim(magnitude(&mut rng).min(MAX_CAPACITY), 1 + rng.below(10_000))
            };
            let base_ms = 1_700_000_000_000 + rng.below(1 << 30);
            let now = old.ms_to_ticks(base_ms);
            let full_at = now + 1 + rng.below_u128(old.burst());
            let enc = encode(&old, full_at).expect("encodes");
            let d = decode(&new, enc.value(), Some(enc.expire_at_ms), 0).expect("decodes");
            // Compare the instants full_at/old_capacity and d.full_at/new_capacity
            // (ms), counted from base_ms so the products stay within u128.
            let truth = (full_at - now) * new.ticks_per_ms();
            let reread = (d.full_at - new.ms_to_ticks(base_ms)) * old.ticks_per_ms();
            assert!(reread >= truth, "{old:?} -> {new:?}: earlier");
            assert!(
                reread - truth < old.ticks_per_ms(),
                "{old:?} -> {new:?}: more than a tick later"
            );
            if new == old {
                assert_eq!(d.full_at, full_at);
            }
        }
    }
}
