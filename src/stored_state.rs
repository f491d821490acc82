//! How a bucket lives in the keyspace: one string key per bucket.
//!
//! The key's **absolute expiry** is the bucket's full-again moment, rounded
//! *up* to the server's millisecond: the key disappears when the bucket is
//! full (so idle buckets cost nothing) and never earlier (a key that vanished
//! early would hand out a fraction of a token too soon).
//!
//! The **value** is `~` followed by the decimal *remainder*: how many ticks
//! (`1/capacity` ms) the true full-again moment lies before the expiry
//! millisecond, `0 <= remainder < capacity`. Together they give the exact
//! full-again tick: `full_at = expire_ms * capacity - remainder`. With the
//! usual parameters (`period * 1000` a multiple of `capacity`) the value is
//! always `~0`.
//!
//! A value that is a plain decimal integer was written by redis-shield 1.x:
//! the number of tokens left, in a key whose TTL was the period. It is read as
//! that many tokens available now, refilling at the bucket's rate from now on
//! (never more than 1.x itself would have allowed at this moment), and it is
//! rewritten in the 2.x form by the next admitted call.

use crate::bucket::{div_ceil, Limit, Ticks};
use crate::error::ShieldError;

const TAG: u8 = b'~';

/// The longest value 2.x writes: the tag and up to 16 digits (a remainder is
/// below the capacity, at most 10^15), with room to spare.
pub const MAX_VALUE_LEN: usize = 24;

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
    // remainder < capacity <= 10^15: at most 16 digits after the tag.
    let mut digits = Decimal::default();
    let tail = digits.format(remainder);
    let mut buf = [TAG; MAX_VALUE_LEN];
    let len = 1 + tail.len();
    if let Some(dst) = buf.get_mut(1..len) {
        dst.copy_from_slice(tail);
    }
    Ok(Encoded {
        buf,
        len,
        expire_at_ms,
    })
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
) -> Result<Ticks, ShieldError> {
    match value.split_first() {
        Some((&TAG, digits)) => {
            let remainder = parse_digits(digits).ok_or(ShieldError::NotABucket)?;
            let expire_at = expire_at_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .ok_or(ShieldError::BadExpiry)?;
            // A remainder is below the capacity it was written with; after a
            // capacity change keep it below the new one. Clamping only moves
            // the full-again moment later (fewer tokens, never more).
            let remainder = Ticks::from(remainder).min(limit.ticks_per_ms() - 1);
            Ok(limit.ms_to_ticks(expire_at) - remainder)
        }
        _ => {
            let tokens_left = parse_legacy(value).ok_or(ShieldError::NotABucket)?;
            let available = tokens_left.clamp(0, i128::from(limit.capacity()));
            let missing = i128::from(limit.capacity()) - available;
            // 0 <= missing <= capacity.
            let missing = Ticks::try_from(missing).unwrap_or(0);
            Ok(now + missing * limit.interval())
        }
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
                Ok(full_at)
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
            let full_at = decode(&limit, v, Some(55_000), now).expect("legacy");
            level(&limit, Some(full_at), now).available
        };
        assert_eq!(at(b"7"), 7);
        assert_eq!(at(b"0"), 0);
        assert_eq!(at(b"-3"), 0);
        assert_eq!(at(b"10"), 10);
        assert_eq!(at(b"999"), 10);
        // After a 1.x value, refill runs at the bucket's rate: 1 token/s.
        let full_at = decode(&limit, b"7", None, now).expect("legacy");
        let later = limit.ms_to_ticks(51_000);
        assert_eq!(level(&limit, Some(full_at), later).available, 8);
    }

    #[test]
    fn a_smaller_capacity_never_gains_tokens_from_an_old_remainder() {
        let old = lim(1_000, 7);
        let new = lim(3, 7);
        let now = old.ms_to_ticks(10_000);
        let full_at = now + 123_456;
        let enc = encode(&old, full_at).expect("encodes");
        let reread = decode(&new, enc.value(), Some(enc.expire_at_ms), 0).expect("decodes");
        assert!(reread > new.ms_to_ticks(enc.expire_at_ms as u64 - 1));
    }
}
