//! How a bucket lives in the keyspace: one string key per bucket.
//!
//! The key's **absolute expiry** is the bucket's full-again moment, rounded
//! *up* to the server's millisecond: the key disappears when the bucket is
//! full (so idle buckets cost nothing) and never earlier (a key that vanished
//! early would hand out a fraction of a token too soon).
//!
//! The **value** says how far before that millisecond the true full-again
//! moment lies, in ticks (see `limit.rs`: for `SHIELD.absorb` a tick is
//! `1/capacity` ms):
//! - `~0`: exactly at the expiry millisecond. With the usual parameters
//!   (`period * 1000` a multiple of `capacity`) this is always the value, and
//!   it means the same for every limit.
//! - `~<remainder>/<ticks per ms>`: `remainder` ticks of `1/<ticks per ms>` ms
//!   before it (`0 < remainder < ticks per ms`; for `SHIELD.absorb` the
//!   denominator is the capacity). The tick size is stored with the
//!   remainder, so a call with another limit converts it exactly, rounding
//!   towards a later full-again moment (fewer tokens, never more).
//! - `~<remainder>` with no denominator (written by pre-release 2.0 builds):
//!   the tick it was counted in is unknown, so it is read as `~0`: at most
//!   one millisecond of refill later than the truth, never earlier.
//!
//! A value that is a plain decimal integer was written by redis-shield 1.x:
//! the number of tokens left, in a key whose TTL was the period. It is read as
//! that many tokens available at the moment of the read. That reading depends
//! on when it is made, so it is not a state: the first call that may write
//! (an absorb, admitted **or denied**) stores it in the 2.x form
//! ([`Decoded::must_store`]), and refill runs from that moment on.

use crate::bucket::Bucket;
use crate::decimal::Decimal;
use crate::error::ShieldError;
use crate::limit::{div_ceil, Limit, Ticks};

const TAG: u8 = b'~';
const OVER: u8 = b'/';

/// The longest value 2.x writes: the tag, a remainder (below the ticks per
/// millisecond, at most 10^18: 18 digits), the slash and the ticks per
/// millisecond (19 digits).
pub const MAX_VALUE_LEN: usize = 40;

/// A stored state ready to be written: the value bytes and the absolute
/// expiry in milliseconds. Lives on the stack: encoding allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    buf: [u8; MAX_VALUE_LEN],
    len: usize,
    expire_at_ms: u64,
}

impl Encoded {
    /// The value to store.
    pub fn value(&self) -> Result<&[u8], ShieldError> {
        self.buf.get(..self.len).ok_or_else(|| {
            ShieldError::Internal("an encoded value is longer than its buffer".into())
        })
    }

    /// The key's absolute expiry (Unix time in ms): when the bucket is full.
    pub fn expire_at_ms(&self) -> u64 {
        self.expire_at_ms
    }
}

impl Bucket {
    /// The state to store for this bucket: a value and an absolute expiry.
    /// Only a bucket that is not full has one (a full bucket is no key).
    ///
    /// ```
    /// use shield_engine::{Bucket, Decision, Limit};
    /// let limit = Limit::new(30, 60).ok_or("limit")?;
    /// let Decision::Admitted { after, .. } = Bucket::full(limit, 1_000).absorb(13) else {
    ///     return Err("denied".into());
    /// };
    /// let stored = after.encode()?;
    /// // 13 tokens at half a token per second: full again 26 s later.
    /// assert_eq!((stored.value()?, stored.expire_at_ms()), (&b"~0"[..], 27_000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self) -> Result<Encoded, ShieldError> {
        let internal =
            |what: &str| ShieldError::Internal(format!("cannot encode a bucket: {what}"));
        let limit = self.limit();
        let full_at = self.full_at().ok_or_else(|| internal("it has no state"))?;
        let per_ms = limit.ticks_per_ms();
        let expire_at = div_ceil(full_at, per_ms);
        let remainder = expire_at * per_ms - full_at;
        let expire_at_ms = u64::try_from(expire_at)
            .ok()
            .filter(|&ms| i64::try_from(ms).is_ok())
            .ok_or_else(|| internal("its expiry is beyond the server's clock"))?;
        let remainder = u64::try_from(remainder).map_err(|_| internal("remainder"))?;
        let mut buf = [TAG; MAX_VALUE_LEN];
        let mut digits = Decimal::default();
        let mut len = 1 + copy_at(&mut buf, 1, digits.format(remainder)?)?;
        if remainder != 0 {
            // remainder < ticks per ms <= 10^18: 18 + 1 + 19 bytes at most.
            len += copy_at(&mut buf, len, &[OVER])?;
            let per_ms = u64::try_from(per_ms).map_err(|_| internal("ticks per ms"))?;
            len += copy_at(&mut buf, len, digits.format(per_ms)?)?;
        }
        Ok(Encoded {
            buf,
            len,
            expire_at_ms,
        })
    }
}

/// Copies `bytes` into `buf` at `at`; their length, or an internal error if
/// they do not fit (never with the bounds of `limit.rs`).
#[inline]
fn copy_at(buf: &mut [u8; MAX_VALUE_LEN], at: usize, bytes: &[u8]) -> Result<usize, ShieldError> {
    buf.get_mut(at..at + bytes.len())
        .ok_or_else(|| ShieldError::Internal("an encoded value does not fit its buffer".into()))?
        .copy_from_slice(bytes);
    Ok(bytes.len())
}

/// A stored bucket, decoded for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The bucket at the moment of the call, in the caller's limit.
    pub bucket: Bucket,
    /// True for a 1.x value that is not full: its reading depends on the
    /// moment it is read, so a call that may write must store `bucket` in the
    /// 2.x form even when it takes nothing (refill then runs from here).
    pub must_store: bool,
}

/// Decodes a stored bucket: its value, the key's absolute expiry (`None`:
/// the key has none), read with `limit` at `now_ms`.
///
/// ```
/// use shield_engine::{decode, Limit};
/// let limit = Limit::new(10, 10).ok_or("limit")?; // 1 token per second
/// let read = decode(limit, b"~0", Some(5_000), 1_000)?;
/// assert_eq!(read.bucket.tokens_left(), 6); // full again in 4 s
/// // A 1.x value: tokens left at the moment of the read.
/// let old = decode(limit, b"3", None, 1_000)?;
/// assert_eq!((old.bucket.tokens_left(), old.must_store), (3, true));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode(
    limit: Limit,
    value: &[u8],
    expire_at_ms: Option<i64>,
    now_ms: u64,
) -> Result<Decoded, ShieldError> {
    let now = limit.ms_to_ticks(now_ms);
    match value.split_first() {
        // The usual value: full again exactly at the expiry millisecond.
        Some((&TAG, b"0")) => match expire_at_ms.and_then(|ms| u64::try_from(ms).ok()) {
            Some(expire_at) => Ok(Decoded {
                bucket: Bucket::from_ticks(limit, now, limit.ms_to_ticks(expire_at)),
                must_store: false,
            }),
            None => Err(ShieldError::BadExpiry),
        },
        Some((&TAG, rest)) => {
            let before_expiry = remainder_ticks(&limit, rest).ok_or(ShieldError::NotABucket)?;
            let expire_at = expire_at_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .ok_or(ShieldError::BadExpiry)?;
            Ok(Decoded {
                bucket: Bucket::from_ticks(
                    limit,
                    now,
                    limit.ms_to_ticks(expire_at) - before_expiry,
                ),
                must_store: false,
            })
        }
        _ => {
            let tokens_left = parse_legacy(value).ok_or(ShieldError::NotABucket)?;
            let tokens_left = tokens_left.clamp(0, i128::from(limit.capacity()));
            // 0 <= missing <= capacity.
            let missing = Ticks::try_from(i128::from(limit.capacity()) - tokens_left).unwrap_or(0);
            Ok(Decoded {
                bucket: Bucket::from_ticks(limit, now, now + missing * limit.interval()),
                must_store: missing > 0,
            })
        }
    }
}

/// The ticks (of `limit`) by which the full-again moment precedes the expiry
/// millisecond, from the part of a 2.x value after the tag; always below one
/// millisecond (`< limit.ticks_per_ms()`). `None`: not a 2.x value.
fn remainder_ticks(limit: &Limit, rest: &[u8]) -> Option<Ticks> {
    let (remainder, per_ms) = match rest.iter().position(|&b| b == OVER) {
        Some(slash) => {
            let (remainder, per_ms) = rest.split_at(slash);
            let per_ms = parse_digits(per_ms.get(1..)?)?;
            (parse_digits(remainder)?, Some(per_ms))
        }
        None => (parse_digits(rest)?, None),
    };
    let remainder = Ticks::from(remainder);
    match per_ms {
        // Written with this tick (the usual case): exact.
        Some(c) if Ticks::from(c) == limit.ticks_per_ms() && remainder < limit.ticks_per_ms() => {
            Some(remainder)
        }
        // remainder/c ms in ticks of 1/new ms, rounded down: the full-again
        // moment lands on or after the true one, less than a tick later.
        Some(c) if remainder < Ticks::from(c) => {
            Some(remainder * limit.ticks_per_ms() / Ticks::from(c))
        }
        Some(_) => None,
        // No denominator: `~0` is exact for any limit; a pre-release `~r` is
        // read as `~0` (later, never earlier).
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
///
/// A count beyond any capacity (above 10^15) is not a 1.x bucket: a
/// redis-cell TAT (nanoseconds, 19 digits) written by `CL.THROTTLE` on the
/// same key would otherwise read as a full bucket and hand out tokens.
fn parse_legacy(value: &[u8]) -> Option<i128> {
    let count = match value.split_first() {
        Some((b'-', digits)) => parse_digits(digits).map(|d| -i128::from(d)),
        _ => parse_digits(value).map(i128::from),
    }?;
    (count.unsigned_abs() <= u128::from(crate::limit::MAX_CAPACITY)).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::Decision;
    use crate::limit::MAX_CAPACITY;
    use crate::reference::{lim, Rng};

    /// The bucket after taking `tokens` from a full one at `now_ms`.
    fn after(limit: Limit, now_ms: u64, tokens: u64) -> Bucket {
        match Bucket::full(limit, now_ms).absorb(tokens) {
            Decision::Admitted { after, .. } => after,
            Decision::Denied { .. } => panic!("admitted"),
        }
    }

    fn reread(b: &Bucket, limit: Limit) -> Decoded {
        let enc = b.encode().unwrap();
        decode(
            limit,
            enc.value().unwrap(),
            Some(enc.expire_at_ms() as i64),
            0,
        )
        .unwrap()
    }

    #[test]
    fn round_trips_exactly_with_expiry_rounded_up() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let capacity = 1 + rng.below(MAX_CAPACITY);
            let limit = lim(capacity, 1 + rng.below(1_000_000));
            let now = limit.ms_to_ticks(1_700_000_000_000 + rng.below(1 << 30));
            let full_at = now + 1 + rng.below_u128(limit.burst());
            let bucket = Bucket::from_ticks(limit, now, full_at);
            let enc = bucket.encode().unwrap();
            let expire = limit.ms_to_ticks(enc.expire_at_ms());
            assert!(expire >= full_at, "expiry never before the full moment");
            assert!(
                expire - full_at < limit.ticks_per_ms(),
                "and less than 1 ms after"
            );
            let d = reread(&bucket, limit);
            assert_eq!((d.bucket.full_at(), d.must_store), (Some(full_at), false));
        }
    }

    #[test]
    fn usual_parameters_store_tilde_zero() {
        let enc = after(lim(30, 60), 1_000, 13).encode().unwrap();
        assert_eq!(enc.value().unwrap(), b"~0");
        assert_eq!(enc.expire_at_ms(), 1_000 + 26_000);
    }

    #[test]
    fn a_full_bucket_has_no_state_to_store() {
        assert!(matches!(
            Bucket::full(lim(3, 1), 5).encode(),
            Err(ShieldError::Internal(_))
        ));
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
            // A CL.THROTTLE (redis-cell) TAT on the same key: not a count.
            b"1795689325000123456",
            b"1000000000000001",
        ] {
            assert_eq!(
                decode(limit, v, Some(5), 0),
                Err(ShieldError::NotABucket),
                "{v:?}"
            );
        }
        assert_eq!(decode(limit, b"~0", None, 0), Err(ShieldError::BadExpiry));
        assert_eq!(
            decode(limit, b"~0", Some(-5), 0),
            Err(ShieldError::BadExpiry)
        );
    }

    #[test]
    fn legacy_values_are_tokens_left_now() {
        let limit = lim(10, 10);
        let at = |v: &[u8]| {
            let d = decode(limit, v, Some(55_000), 50_000).expect("legacy");
            (d.bucket.tokens_left(), d.must_store)
        };
        // Not full: the reading depends on `now`, so it must be stored.
        assert_eq!(at(b"7"), (7, true));
        assert_eq!(at(b"0"), (0, true));
        assert_eq!(at(b"-3"), (0, true));
        // Full whenever it is read: nothing to store.
        assert_eq!(at(b"10"), (10, false));
        assert_eq!(at(b"999"), (10, false));
        // Once stored, refill runs at the bucket's rate: 1 token/s.
        let d = decode(limit, b"7", None, 50_000).expect("legacy");
        assert_eq!(d.bucket.at(51_000).tokens_left(), 8);
        let stored = reread(&d.bucket, limit).bucket;
        assert_eq!(stored.at(51_000).tokens_left(), 8);
    }

    #[test]
    fn a_remainder_carries_its_capacity() {
        // 3 tokens per 7 s: one token is 2333 2/3 ms, 2 ticks before 2334.
        let enc = after(lim(3, 7), 0, 1).encode().unwrap();
        assert_eq!(
            (enc.value().unwrap(), enc.expire_at_ms()),
            (&b"~2/3"[..], 2_334)
        );
        // The longest value: a remainder of 15 digits over a capacity of 16.
        let max = lim(MAX_CAPACITY, 7);
        let b = Bucket::from_ticks(max, 0, max.ms_to_ticks(5) - Ticks::from(MAX_CAPACITY - 1));
        let enc = b.encode().unwrap();
        assert_eq!(enc.value().unwrap(), b"~999999999999999/1000000000000000");
        assert!(enc.value().unwrap().len() <= MAX_VALUE_LEN);
        // A pre-release value without its capacity reads as `~0`.
        let d = decode(lim(3, 7), b"~2", Some(2_334), 0).expect("decodes");
        assert_eq!(d.bucket.full_at(), Some(lim(3, 7).ms_to_ticks(2_334)));
    }

    /// The case from the field: a remainder written with capacity 10^15 and
    /// read with 10^9 used to be clamped to 10^9 - 1 ticks (almost 1 ms, 9 990
    /// tokens of this bucket) instead of the 999 ticks it stands for.
    #[test]
    fn a_smaller_capacity_reads_the_remainder_exactly() {
        let old = lim(1_000_000_000_000_000, 1_000);
        let new = lim(1_000_000_000, 100);
        let now_ms = 1_700_000_000_000;
        let b = after(old, now_ms, 59_999_999_999_001);
        let enc = b.encode().unwrap();
        assert_eq!(enc.value().unwrap(), b"~999000000/1000000000000000");
        let d = decode(
            new,
            enc.value().unwrap(),
            Some(enc.expire_at_ms() as i64),
            now_ms,
        )
        .unwrap();
        assert_eq!(
            d.bucket.full_at(),
            Some(new.ms_to_ticks(enc.expire_at_ms()) - 999)
        );
        let without_remainder =
            decode(new, b"~0", Some(enc.expire_at_ms() as i64), now_ms).unwrap();
        assert!(d.bucket.tokens_left() <= without_remainder.bucket.tokens_left() + 1);
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
            crate::reference::assert_capacity_change_is_conservative(old, new, base_ms, full_at);
        }
    }
}
