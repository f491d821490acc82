//! Parsing of command arguments from raw bytes, without allocating.

use crate::error::ShieldError;
use crate::limit::{Limit, MAX_CAPACITY, MAX_PERIOD_SECS};

/// Largest `tokens` accepted: anything above capacity is denied anyway, this
/// only keeps the argument a valid server integer.
pub const MAX_TOKENS: u64 = i64::MAX as u64;

/// The arguments of one bucket: `<capacity> <period> [<tokens>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketArgs {
    pub limit: Limit,
    pub tokens: u64,
}

/// Parses a canonical positive decimal integer: ASCII digits only, no sign,
/// no leading zero, no spaces, at most `max`.
pub fn parse_positive(name: &'static str, bytes: &[u8], max: u64) -> Result<u64, ShieldError> {
    match bytes.first() {
        Some(b'1'..=b'9') => {}
        _ => return Err(ShieldError::NotPositiveInteger(name)),
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err(ShieldError::NotPositiveInteger(name));
    }
    // Up to 19 digits cannot overflow a u64 (10^19 - 1 < 2^64); longer ones
    // are out of range whatever they say (no leading zeros).
    if bytes.len() > 19 {
        return Err(ShieldError::OutOfRange { name, max });
    }
    let value = bytes
        .iter()
        .fold(0u64, |v, &b| v * 10 + u64::from(b - b'0'));
    if value > max {
        return Err(ShieldError::OutOfRange { name, max });
    }
    Ok(value)
}

/// Parses `<capacity> <period> [<tokens>]`; `tokens` defaults to 1.
///
/// ```
/// use shield_engine::{parse_bucket, ShieldError};
/// let args = parse_bucket(b"30", b"60", Some(b"13"))?;
/// assert_eq!((args.limit, args.tokens), (shield_engine::Limit::new(30, 60).ok_or(ShieldError::DuplicateKey)?, 13));
/// assert_eq!(
///     parse_bucket(b"30", b"1.5", None).map_err(|e| e.to_string()),
///     Err("ERR period is not a positive integer".to_string())
/// );
/// # Ok::<(), ShieldError>(())
/// ```
pub fn parse_bucket(
    capacity: &[u8],
    period: &[u8],
    tokens: Option<&[u8]>,
) -> Result<BucketArgs, ShieldError> {
    let capacity = parse_positive("capacity", capacity, MAX_CAPACITY)?;
    let period = parse_positive("period", period, MAX_PERIOD_SECS)?;
    let tokens = match tokens {
        Some(t) => parse_positive("tokens", t, MAX_TOKENS)?,
        None => 1,
    };
    let limit = Limit::new(capacity, period).ok_or(ShieldError::OutOfRange {
        name: "capacity",
        max: MAX_CAPACITY,
    })?;
    Ok(BucketArgs { limit, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: &[u8]) -> Result<u64, ShieldError> {
        parse_positive("capacity", b, MAX_CAPACITY)
    }

    #[test]
    fn accepts_canonical_positive_integers() {
        assert_eq!(p(b"1"), Ok(1));
        assert_eq!(p(b"30"), Ok(30));
        assert_eq!(p(b"1000000000000000"), Ok(MAX_CAPACITY));
    }

    #[test]
    fn rejects_everything_else_naming_the_argument() {
        let bad: &[&[u8]] = &[
            b"",
            b"0",
            b"00",
            b"-1",
            b"+1",
            b"1.5",
            b"1e3",
            b" 1",
            b"1 ",
            b"01",
            b"abc",
            b"\x00",
            b"\xff\xfe",
            b"1\x00",
            b"0x10",
            b"inf",
            b"nan",
            b"-0",
        ];
        for b in bad {
            assert_eq!(
                p(b),
                Err(ShieldError::NotPositiveInteger("capacity")),
                "{b:?}"
            );
        }
        assert_eq!(
            p(b"NaN").unwrap_err().to_string(),
            "ERR capacity is not a positive integer"
        );
    }

    #[test]
    fn out_of_range_and_overflow() {
        let too_big = ShieldError::OutOfRange {
            name: "capacity",
            max: MAX_CAPACITY,
        };
        assert_eq!(p(b"1000000000000001"), Err(too_big.clone()));
        assert_eq!(p(b"18446744073709551616"), Err(too_big.clone()));
        assert_eq!(p(&[b'9'; 400]), Err(too_big));
        assert_eq!(
            parse_positive("tokens", b"9223372036854775808", MAX_TOKENS)
                .unwrap_err()
                .to_string(),
            "ERR tokens is out of range (1 to 9223372036854775807)"
        );
    }

    #[test]
    fn bucket_arguments() {
        let a = parse_bucket(b"30", b"60", None).expect("valid");
        assert_eq!((a.limit, a.tokens), (Limit::new(30, 60).unwrap(), 1));
        let a = parse_bucket(b"30", b"60", Some(b"13")).expect("valid");
        assert_eq!(a.tokens, 13);
        assert_eq!(
            parse_bucket(b"30", b"0", None),
            Err(ShieldError::NotPositiveInteger("period"))
        );
        assert_eq!(
            parse_bucket(b"30", b"10000000001", None),
            Err(ShieldError::OutOfRange {
                name: "period",
                max: MAX_PERIOD_SECS
            })
        );
        assert_eq!(
            parse_bucket(b"30", b"60", Some(b"-3")),
            Err(ShieldError::NotPositiveInteger("tokens"))
        );
        // More tokens than capacity is valid input (the call is denied).
        assert_eq!(
            parse_bucket(b"3", b"1", Some(b"4")).map(|a| a.tokens),
            Ok(4)
        );
    }
}
