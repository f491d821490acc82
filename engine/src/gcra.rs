//! `GCRA` (the command Redis wrote for its core and held out of 8.8): its
//! arguments, errors and reply, served by the exact bucket. A `GCRA` key is
//! stored like a `SHIELD.absorb` bucket (this crate's format, `stored.rs`).
//!
//! `GCRA key max_burst tokens_per_period period [TOKENS count]` is a bucket
//! of `max_burst + 1` tokens refilling `tokens_per_period` every `period`
//! seconds; `period` is an exact decimal (up to 6 decimal places), never a
//! binary float.

use crate::bucket::{Bucket, Decision};
use crate::error::ShieldError;
use crate::limit::{Limit, Rate, Seconds, MAX_CAPACITY, MAX_PERIOD_DECIMALS};

/// The arguments of one `GCRA` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraArgs {
    pub limit: Limit,
    /// Tokens this call takes (`TOKENS`, default 1).
    pub tokens: u64,
}

const NOT_AN_INTEGER: &str = "value is not an integer or out of range";
const NOT_POSITIVE: &str = "value is out of range, must be positive";
const NOT_FROM_ONE: &str = "value is out of range, value must between 1 and 9223372036854775807";
const BAD_PERIOD: &str = "period must be > 0 and < 1e12";

/// A Redis integer (`string2ll`: optional `-`, no leading zeros, no spaces).
fn redis_integer(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let magnitude = digits.iter().try_fold(0i128, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(i128::from(b - b'0')))?
    })?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// Parses `<max_burst> <tokens_per_period> <period> [TOKENS <count>]` with
/// the native command's error texts; values beyond what the exact engine
/// computes get this crate's own range errors.
///
/// ```
/// use shield_engine::parse_gcra;
/// let args = parse_gcra(&[b"29", b"30", b"60", b"TOKENS", b"13"])?;
/// assert_eq!((args.limit.capacity(), args.tokens), (30, 13));
/// assert_eq!(
///     parse_gcra(&[b"29", b"30", b"60", b"TOKENS"]).map_err(|e| e.to_string()),
///     Err("ERR Missing TOKENS value".to_string())
/// );
/// # Ok::<(), shield_engine::ShieldError>(())
/// ```
pub fn parse_gcra(args: &[&[u8]]) -> Result<GcraArgs, ShieldError> {
    let native = |msg| Err(ShieldError::Native(msg));
    let [max_burst, per_period, period, rest @ ..] = args else {
        return Err(ShieldError::WrongArity);
    };
    let max_burst = match redis_integer(max_burst) {
        Some(n) if n >= 0 => n.unsigned_abs(),
        _ => return native(NOT_POSITIVE),
    };
    let per_period = match redis_integer(per_period) {
        Some(n) if n >= 1 => n.unsigned_abs(),
        Some(_) => return native(NOT_FROM_ONE),
        None => return native(NOT_AN_INTEGER),
    };
    let period = parse_period(period)?;
    let tokens = match rest {
        [] => 1,
        [keyword, ..] if !keyword.eq_ignore_ascii_case(b"TOKENS") => return native("syntax error"),
        [_] => return native("Missing TOKENS value"),
        [_, count] => match redis_integer(count) {
            Some(n) if n >= 1 => n.unsigned_abs(),
            Some(_) => return native(NOT_FROM_ONE),
            None => return native(NOT_AN_INTEGER),
        },
        _ => return Err(ShieldError::WrongArity),
    };
    if max_burst >= MAX_CAPACITY {
        return Err(ShieldError::OutOfRange {
            name: "max_burst",
            max: MAX_CAPACITY - 1,
        });
    }
    let limit = Limit::with_rate(
        max_burst + 1,
        Rate {
            tokens: per_period,
            per: period,
        },
    )
    .map_err(|e| match e {
        ShieldError::OutOfRange {
            name: "tokens per period",
            max,
        } => ShieldError::OutOfRange {
            name: "tokens_per_period",
            max,
        },
        other => other,
    })?;
    Ok(GcraArgs { limit, tokens })
}

/// The period: a decimal number of seconds, optionally with an exponent
/// (`60`, `0.5`, `1e3`, `2.5e-1`), above 0 and below 10^12, with at most 6
/// decimal places once the exponent is applied.
fn parse_period(text: &[u8]) -> Result<Seconds, ShieldError> {
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e' || b == b'E') {
        Some(e) => {
            let (m, rest) = text.split_at(e);
            let exponent = rest
                .get(1..)
                .and_then(|x| std::str::from_utf8(x).ok())
                .and_then(|x| x.strip_prefix('+').unwrap_or(x).parse::<i32>().ok())
                .filter(|x| x.abs() <= 40)
                .ok_or(ShieldError::Native("value is not a valid float"))?;
            (m, exponent)
        }
        None => (text, 0),
    };
    let (negative, mantissa) = match mantissa.split_first() {
        Some((b'-', m)) => (true, m),
        Some((b'+', m)) => (false, m),
        _ => (false, mantissa),
    };
    let value = Seconds::parse_decimal(mantissa)
        .ok_or(ShieldError::Native("value is not a valid float"))?;
    let value = value
        .scaled(exponent)
        .ok_or(ShieldError::Native(BAD_PERIOD))?;
    if negative || !value.is_between_zero_and(1_000_000_000_000) {
        return Err(ShieldError::Native(BAD_PERIOD));
    }
    if value.decimals() > MAX_PERIOD_DECIMALS {
        return Err(ShieldError::BadRate(
            "period has more than 6 decimal places (this GCRA is exact to the microsecond of a period)",
        ));
    }
    Ok(value)
}

/// The five integers both GCRA commands answer (`GCRA`, and `CL.THROTTLE`
/// in its own words): `[limited 0|1, max_burst + 1, tokens left, retry
/// after s, full after s]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraReply {
    pub limited: bool,
    /// `max_burst + 1`: the capacity.
    pub limit: u64,
    /// Whole tokens left: after the call when admitted, now when limited
    /// ("available", "remaining").
    pub tokens_left: u64,
    /// -1 when not limited, or never (tokens above the capacity); else the
    /// seconds to wait, rounded up so that waiting them admits the call.
    pub retry_after_s: i64,
    /// Seconds until the bucket is full again, rounded up ("full burst
    /// after", "reset after").
    pub full_after_s: u64,
}

impl GcraReply {
    /// The bucket as it is, nothing taken.
    pub fn peek(bucket: &Bucket) -> GcraReply {
        GcraReply {
            limited: false,
            limit: bucket.limit().capacity(),
            tokens_left: bucket.tokens_left(),
            retry_after_s: -1,
            full_after_s: seconds(bucket.ms_until_full()),
        }
    }
}

/// Whole seconds, rounded up.
fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// What a `GCRA` call does to `bucket`: what to store (admitted) and the
/// reply.
///
/// ```
/// use shield_engine::{gcra, parse_gcra, Bucket, ShieldError};
/// // The figures of the native command: GCRA g 29 30 60 TOKENS 13 on a
/// // fresh key replies 0 30 17 -1 26, then 0 30 4 -1 52, then limited.
/// let args = parse_gcra(&[b"29", b"30", b"60", b"TOKENS", b"13"])?;
/// let (after, reply) = gcra(&Bucket::full(args.limit, 1_000), args.tokens);
/// assert_eq!((reply.tokens_left, reply.full_after_s), (17, 26));
/// let (after, reply) = gcra(&after.ok_or(ShieldError::DuplicateKey)?, args.tokens);
/// assert_eq!((reply.tokens_left, reply.full_after_s), (4, 52));
/// let (none, reply) = gcra(&after.ok_or(ShieldError::DuplicateKey)?, args.tokens);
/// assert!(none.is_none() && reply.limited);
/// # Ok::<(), ShieldError>(())
/// ```
pub fn gcra(bucket: &Bucket, tokens: u64) -> (Option<Bucket>, GcraReply) {
    match bucket.absorb(tokens) {
        Decision::Admitted { after, .. } => (Some(after), GcraReply::peek(&after)),
        Decision::Denied { .. } => (
            None,
            GcraReply {
                limited: true,
                retry_after_s: bucket
                    .ms_until_available(tokens)
                    .map_or(-1, |ms| i64::try_from(seconds(ms)).unwrap_or(i64::MAX)),
                ..GcraReply::peek(bucket)
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(args: &[&[u8]]) -> String {
        parse_gcra(args).unwrap_err().to_string()
    }

    #[test]
    fn the_native_error_texts() {
        assert_eq!(
            err(&[b"x", b"1", b"1"]),
            "ERR value is out of range, must be positive"
        );
        assert_eq!(
            err(&[b"-1", b"1", b"1"]),
            "ERR value is out of range, must be positive"
        );
        assert_eq!(
            err(&[b"1", b"x", b"1"]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(&[b"1", b"0", b"1"]),
            "ERR value is out of range, value must between 1 and 9223372036854775807"
        );
        assert_eq!(err(&[b"1", b"1", b"x"]), "ERR value is not a valid float");
        assert_eq!(
            err(&[b"1", b"1", b"0"]),
            "ERR period must be > 0 and < 1e12"
        );
        assert_eq!(
            err(&[b"1", b"1", b"-5"]),
            "ERR period must be > 0 and < 1e12"
        );
        assert_eq!(
            err(&[b"1", b"1", b"1e12"]),
            "ERR period must be > 0 and < 1e12"
        );
        assert_eq!(err(&[b"1", b"1", b"1", b"COUNT", b"1"]), "ERR syntax error");
        assert_eq!(
            err(&[b"1", b"1", b"1", b"tokens"]),
            "ERR Missing TOKENS value"
        );
        assert_eq!(
            err(&[b"1", b"1", b"1", b"TOKENS", b"0"]),
            "ERR value is out of range, value must between 1 and 9223372036854775807"
        );
        assert_eq!(
            err(&[b"1", b"1", b"1", b"TOKENS", b"01"]),
            "ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn periods() {
        let p = |t: &[u8]| parse_period(t);
        assert_eq!(p(b"60"), Ok(Seconds::whole(60)));
        assert_eq!(p(b"1e3"), Ok(Seconds::whole(1000)));
        assert_eq!(p(b"2.5e-1"), p(b"0.25"));
        assert_eq!(p(b"+1.5"), p(b"1.5"));
        assert!(
            matches!(p(b"0.0000001"), Err(ShieldError::BadRate(_))),
            "{:?}",
            p(b"0.0000001")
        );
        assert_eq!(
            p(b"inf"),
            Err(ShieldError::Native("value is not a valid float"))
        );
    }
}
