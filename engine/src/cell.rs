//! `CL.THROTTLE` (redis-cell's command): its arguments, its reply, and its
//! stored format, served by the exact bucket.
//!
//! `CL.THROTTLE key max_burst count period [quantity]` is a bucket of
//! `max_burst + 1` tokens refilling `count` tokens every `period` seconds;
//! redis-cell's theoretical arrival time (TAT) is the bucket's full-again
//! moment. Its key holds the TAT in nanoseconds since the Unix epoch, as a
//! decimal integer, with a TTL: this module reads and writes exactly that,
//! so a key can move between redis-cell and redis-shield in either direction.
//! A TAT written here is rounded **up** to the nanosecond (never more
//! permissive) and read back exactly; one written by redis-cell is read on
//! the next tick (see [`decode_cell`]).

use crate::args::parse_positive;
use crate::bucket::Bucket;
use crate::decimal::Decimal;
use crate::error::ShieldError;
use crate::gcra::{gcra, GcraReply};
use crate::limit::{div_ceil, div_floor, Limit, Rate, Seconds, Ticks, MAX_CAPACITY};

const NS_PER_MS: u128 = 1_000_000;

/// The arguments of one `CL.THROTTLE` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleArgs {
    pub limit: Limit,
    /// Tokens this call takes; 0 is a peek.
    pub quantity: u64,
}

/// Parses `<max_burst> <count> <period> [<quantity>]`: integers, `max_burst`
/// and `quantity` from 0, `count` and `period` (seconds) from 1.
///
/// ```
/// use shield_engine::parse_throttle;
/// let args = parse_throttle(b"15", b"30", b"60", None)?;
/// assert_eq!((args.limit.capacity(), args.quantity), (16, 1));
/// # Ok::<(), shield_engine::ShieldError>(())
/// ```
pub fn parse_throttle(
    max_burst: &[u8],
    count: &[u8],
    period: &[u8],
    quantity: Option<&[u8]>,
) -> Result<ThrottleArgs, ShieldError> {
    let max_burst = parse_natural("max_burst", max_burst, MAX_CAPACITY - 1)?;
    let count = parse_positive("count", count, MAX_CAPACITY)?;
    let period = parse_positive("period", period, 999_999_999_999)?;
    let quantity = match quantity {
        Some(q) => parse_natural("quantity", q, i64::MAX as u64)?,
        None => 1,
    };
    let limit = Limit::with_rate(
        max_burst + 1,
        Rate {
            tokens: count,
            per: Seconds::whole(period),
        },
    )?;
    Ok(ThrottleArgs { limit, quantity })
}

/// `0` or a positive integer, canonical, at most `max`.
fn parse_natural(name: &'static str, bytes: &[u8], max: u64) -> Result<u64, ShieldError> {
    if bytes == b"0" {
        return Ok(0);
    }
    parse_positive(name, bytes, max).map_err(|e| match e {
        ShieldError::NotPositiveInteger(name) => ShieldError::NotNaturalInteger(name),
        other => other,
    })
}

/// What a `CL.THROTTLE` call does to `bucket`: what to store (only an
/// admitted call with `quantity > 0` changes the bucket) and redis-cell's
/// reply, `[limited, limit, remaining, retry_after, reset_after]`: the same
/// five integers as `GCRA`'s (see [`GcraReply`]), `quantity 0` being a peek.
///
/// ```
/// use shield_engine::{parse_throttle, throttle, Bucket, GcraReply};
/// let args = parse_throttle(b"15", b"30", b"60", None)?;
/// let (_, reply) = throttle(&Bucket::full(args.limit, 1_000), 1);
/// assert_eq!(reply, GcraReply { limited: false, limit: 16, tokens_left: 15, retry_after_s: -1, full_after_s: 2 });
/// # Ok::<(), shield_engine::ShieldError>(())
/// ```
pub fn throttle(bucket: &Bucket, quantity: u64) -> (Option<Bucket>, GcraReply) {
    if quantity == 0 {
        return (None, GcraReply::peek(bucket));
    }
    gcra(bucket, quantity)
}

/// A TAT to store: the decimal nanoseconds and the key's absolute expiry.
pub struct CellState {
    digits: Decimal,
    tat_ns: u64,
    expire_at_ms: u64,
}

impl CellState {
    /// The value: the TAT in nanoseconds, in decimal.
    pub fn value(&mut self) -> Result<&[u8], ShieldError> {
        self.digits.format(self.tat_ns)
    }

    /// The key's absolute expiry: the TAT rounded up to the millisecond.
    pub fn expire_at_ms(&self) -> u64 {
        self.expire_at_ms
    }
}

impl Bucket {
    /// The bucket's state in redis-cell's format: its full-again moment in
    /// nanoseconds, rounded up.
    pub fn encode_cell(&self) -> Result<CellState, ShieldError> {
        let limit = self.limit();
        let full_at = self
            .full_at()
            .ok_or_else(|| ShieldError::Internal("cannot encode a bucket with no state".into()))?;
        let tat_ns = div_ceil(full_at * NS_PER_MS, limit.ticks_per_ms());
        let tat_ns = u64::try_from(tat_ns)
            .ok()
            .filter(|&ns| i64::try_from(ns).is_ok())
            .ok_or_else(|| ShieldError::Internal("a TAT beyond 2262".into()))?;
        Ok(CellState {
            digits: Decimal::default(),
            tat_ns,
            expire_at_ms: tat_ns.div_ceil(1_000_000),
        })
    }
}

/// Reads a redis-cell key (the TAT in nanoseconds) with `limit` at `now_ms`.
/// A TAT this module wrote is read back exactly (the tick it was rounded up
/// from). Any other is read as the first tick on or after it: a tick is
/// `1 / count` ms, so a TAT written by redis-cell is read up to `1 / count`
/// ms later (a whole millisecond at `count = 1`), never earlier: the bucket
/// is as full or emptier, never fuller.
///
/// ```
/// use shield_engine::{decode_cell, parse_throttle};
/// let args = parse_throttle(b"15", b"30", b"60", None)?; // a token every 2 s
/// // Full again 4 s after now: 14 of 16 tokens are there.
/// let bucket = decode_cell(args.limit, b"5000000000", 1_000)?;
/// assert_eq!(bucket.tokens_left(), 14);
/// # Ok::<(), shield_engine::ShieldError>(())
/// ```
pub fn decode_cell(limit: Limit, value: &[u8], now_ms: u64) -> Result<Bucket, ShieldError> {
    let tat_ns = match value.first() {
        Some(b'0'..=b'9') if value.len() <= 20 => value.iter().try_fold(0u64, |acc, &b| {
            b.is_ascii_digit()
                .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))?
        }),
        _ => None,
    }
    .ok_or(ShieldError::NotACellBucket)?;
    let per_ms = limit.ticks_per_ms();
    let exact = Ticks::from(tat_ns) * per_ms;
    let mut full_at = div_floor(exact, NS_PER_MS);
    // Our own writes are ceil(full_at / tick in ns): take the tick they came
    // from; anything else goes up to the next tick.
    if div_ceil(full_at * NS_PER_MS, per_ms) != Ticks::from(tat_ns) {
        full_at += 1;
    }
    Ok(Bucket::from_ticks(
        limit,
        limit.ms_to_ticks(now_ms),
        full_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Rng;

    fn args(b: u64, c: u64, p: u64) -> ThrottleArgs {
        parse_throttle(
            b.to_string().as_bytes(),
            c.to_string().as_bytes(),
            p.to_string().as_bytes(),
            None,
        )
        .unwrap()
    }

    /// The figures of the anchors' README: `CL.THROTTLE user123 15 30 60` on
    /// a fresh key replies `0 16 15 -1 2`.
    #[test]
    fn the_reference_example() {
        let a = args(15, 30, 60);
        let (after, reply) = throttle(&Bucket::full(a.limit, 1_700_000_000_000), 1);
        assert_eq!(
            reply,
            GcraReply {
                limited: false,
                limit: 16,
                tokens_left: 15,
                retry_after_s: -1,
                full_after_s: 2
            }
        );
        let mut state = after.unwrap().encode_cell().unwrap();
        assert_eq!(state.value().unwrap(), b"1700000002000000000");
        assert_eq!(state.expire_at_ms(), 1_700_000_002_000);
    }

    #[test]
    fn arguments() {
        assert_eq!(args(0, 1, 1).limit.capacity(), 1);
        assert_eq!(
            parse_throttle(b"0", b"1", b"1", Some(b"0"))
                .unwrap()
                .quantity,
            0
        );
        assert_eq!(
            parse_throttle(b"-1", b"1", b"1", None),
            Err(ShieldError::NotNaturalInteger("max_burst"))
        );
        assert_eq!(
            parse_throttle(b"1", b"0", b"1", None),
            Err(ShieldError::NotPositiveInteger("count"))
        );
        assert_eq!(
            parse_throttle(b"1", b"1", b"0", None),
            Err(ShieldError::NotPositiveInteger("period"))
        );
        assert_eq!(
            parse_throttle(b"1", b"1", b"1", Some(b"x")),
            Err(ShieldError::NotNaturalInteger("quantity"))
        );
    }

    #[test]
    fn a_peek_changes_nothing_and_a_denial_says_when() {
        let a = args(4, 1, 1); // 5 tokens, one per second
        let now = 1_000_000;
        let (after, _) = throttle(&Bucket::full(a.limit, now), 5);
        let drained = after.unwrap();
        let (none, peek) = throttle(&drained, 0);
        assert_eq!(none, None);
        assert_eq!(
            (peek.limited, peek.tokens_left, peek.full_after_s),
            (false, 0, 5)
        );
        let (none, denied) = throttle(&drained.at(now + 1), 2);
        assert_eq!(none, None);
        assert_eq!(
            (denied.limited, denied.retry_after_s, denied.full_after_s),
            (true, 2, 5)
        );
        let (_, never) = throttle(&drained, 6);
        assert_eq!(never.retry_after_s, -1);
    }

    /// What this module writes it reads back exactly, whatever the rate;
    /// what redis-cell writes is read on or after its nanosecond.
    #[test]
    fn tats_round_trip() {
        let mut rng = Rng::new(21);
        for _ in 0..20_000 {
            let a = args(
                rng.below(1_000),
                1 + rng.below(1_000_000),
                1 + rng.below(100_000),
            );
            let now_ms = 1_700_000_000_000 + rng.below(1 << 30);
            let now = a.limit.ms_to_ticks(now_ms);
            let full_at = now + 1 + rng.below_u128(a.limit.burst());
            let bucket = Bucket::from_ticks(a.limit, now, full_at);
            let mut state = bucket.encode_cell().unwrap();
            let read = decode_cell(a.limit, state.value().unwrap(), now_ms).unwrap();
            assert_eq!(read.full_at(), Some(full_at));
            assert!(state.expire_at_ms() * 1_000_000 >= state.tat_ns);
            // Any nanosecond value: the tick read is less than a nanosecond
            // before it (the tick our own write of that nanosecond came
            // from) or the first tick on or after it.
            let ns = 1_700_000_000_000_000_000 + rng.below(1 << 60);
            let read = decode_cell(a.limit, ns.to_string().as_bytes(), now_ms).unwrap();
            let t = read.full_at().unwrap();
            let per_ms = a.limit.ticks_per_ms();
            assert!(t * NS_PER_MS > Ticks::from(ns - 1) * per_ms);
            assert!((t - 1) * NS_PER_MS < Ticks::from(ns) * per_ms);
        }
        for bad in [
            &b""[..],
            b"-1",
            b"1.5",
            b"hello",
            b" 1",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                decode_cell(args(1, 1, 1).limit, bad, 0),
                Err(ShieldError::NotACellBucket),
                "{bad:?}"
            );
        }
    }
}
