//! A bucket's parameters, and the tick arithmetic they define.
//!
//! A bucket holds up to `capacity` tokens and refills `tokens` tokens every
//! `per` seconds (a [`Rate`]; `SHIELD.absorb` refills its whole capacity per
//! period). To keep that exact, time is measured in *ticks* of
//! `1 / (tokens * 10^decimals)` millisecond, where `per` is written with
//! `decimals` decimal places: one token then takes exactly
//! `per * 10^decimals * 1000` ticks to refill (the *interval*), an integer,
//! and a millisecond is an integer number of ticks too. A full bucket is
//! `capacity * interval` ticks of refill (the *burst*). For `SHIELD.absorb`
//! (`tokens = capacity`, whole seconds) a tick is `1/capacity` ms. Ticks never
//! leave this crate: callers speak milliseconds.
//!
//! Bounds, so that no product overflows `u128`: capacity and tokens up to
//! 10^15, a period below 10^12 seconds with at most 6 decimal places, and at
//! most 10^18 ticks per millisecond (`tokens * 10^decimals`).

use crate::error::ShieldError;

/// Largest capacity accepted (10^15 tokens).
pub const MAX_CAPACITY: u64 = 1_000_000_000_000_000;
/// Largest period accepted by `SHIELD.absorb`, in seconds (10^10 s, about
/// 317 years).
pub const MAX_PERIOD_SECS: u64 = 10_000_000_000;
/// Largest number of ticks per millisecond (`tokens * 10^decimals`).
const MAX_TICKS_PER_MS: u64 = 1_000_000_000_000_000_000;
/// Most decimal places of a period (microseconds).
pub const MAX_PERIOD_DECIMALS: u32 = 6;

/// A count of ticks. All arithmetic is done in `u128` on bounded inputs, so
/// nothing overflows (see the bounds above).
pub(crate) type Ticks = u128;

/// An exact decimal number of seconds: `units / 10^decimals`.
///
/// ```
/// use shield_engine::Seconds;
/// let half = Seconds::parse(b"0.5").ok_or("not a period")?;
/// assert_eq!(half, Seconds::parse(b"0.500").ok_or("not a period")?);
/// assert_eq!(Seconds::whole(60), Seconds::parse(b"60").ok_or("not a period")?);
/// assert!(Seconds::parse(b"1e3").is_none()); // no exponents, no binary floats
/// # Ok::<(), &str>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds {
    units: u64,
    decimals: u32,
}

impl Seconds {
    /// A whole number of seconds.
    pub fn whole(secs: u64) -> Seconds {
        Seconds {
            units: secs,
            decimals: 0,
        }
    }

    /// A plain decimal (`60`, `0.5`, `2.25`, `.5`, `1.`): digits with at most
    /// one dot and at most [`MAX_PERIOD_DECIMALS`] digits after it, trailing
    /// zeros dropped. `None` for anything else (signs, exponents, `inf`,
    /// spaces, more decimals, more than 18 significant digits).
    pub fn parse(text: &[u8]) -> Option<Seconds> {
        Seconds::parse_decimal(text).filter(|s| s.decimals <= MAX_PERIOD_DECIMALS)
    }

    /// [`Seconds::parse`] with up to 18 decimal places.
    pub(crate) fn parse_decimal(text: &[u8]) -> Option<Seconds> {
        let (int, frac) = match text.iter().position(|&b| b == b'.') {
            Some(dot) => {
                let (int, frac) = text.split_at(dot);
                (int, frac.get(1..)?)
            }
            None => (text, &[][..]),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let frac_len = frac.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1);
        let frac = frac.get(..frac_len)?;
        let decimals = u32::try_from(frac.len()).ok().filter(|&d| d <= 18)?;
        let units = int.iter().chain(frac).try_fold(0u64, |acc, &b| {
            b.is_ascii_digit()
                .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))?
        })?;
        // The dropped trailing zeros must be digits too.
        if !text.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
            return None;
        }
        Some(Seconds { units, decimals })
    }

    /// Decimal places.
    pub fn decimals(&self) -> u32 {
        self.decimals
    }

    /// The value times `10^exponent`, exactly, trailing zeros dropped;
    /// `None` if it does not fit.
    pub fn scaled(self, exponent: i32) -> Option<Seconds> {
        let mut units = self.units;
        let mut decimals = i64::from(self.decimals) - i64::from(exponent);
        while decimals < 0 {
            units = units.checked_mul(10)?;
            decimals += 1;
        }
        while decimals > 0 && units % 10 == 0 && units != 0 {
            units /= 10;
            decimals -= 1;
        }
        Some(Seconds {
            units,
            decimals: u32::try_from(decimals).ok()?,
        })
    }

    /// True when the value is above zero and below `limit` whole seconds.
    pub fn is_between_zero_and(&self, limit: u64) -> bool {
        self.units > 0
            && u128::from(self.units) < u128::from(limit) * u128::from(10u64.pow(self.decimals))
    }
}

/// A refill rate: `tokens` tokens every `per` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub tokens: u64,
    pub per: Seconds,
}

/// The parameters of a bucket, validated.
///
/// ```
/// use shield_engine::{Limit, Rate, Seconds, MAX_CAPACITY};
/// // SHIELD.absorb: 100 tokens, full again 60 s after empty.
/// let limit = Limit::new(100, 60).ok_or("invalid")?;
/// assert_eq!(limit.capacity(), 100);
/// // A burst of 16, refilling 30 tokens a minute (CL.THROTTLE k 15 30 60).
/// let rate = Rate { tokens: 30, per: Seconds::whole(60) };
/// assert!(Limit::with_rate(16, rate).is_ok());
/// assert!(Limit::new(0, 60).is_none());
/// assert!(Limit::new(MAX_CAPACITY + 1, 60).is_none());
/// # Ok::<(), &str>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    capacity: u64,
    /// Ticks in one millisecond: `tokens * 10^decimals` of the rate.
    ticks_per_ms: u64,
    /// Ticks to refill one token: `per * 10^decimals * 1000`.
    interval: Ticks,
}

impl Limit {
    /// The limit of `SHIELD.absorb`: `capacity` tokens, refilling the whole
    /// capacity every `period_secs` seconds. `None` when a parameter is zero
    /// or above its maximum.
    pub fn new(capacity: u64, period_secs: u64) -> Option<Limit> {
        // What `with_rate(capacity, capacity per period_secs)` gives, without
        // its general checks: this runs on every SHIELD call.
        ((1..=MAX_CAPACITY).contains(&capacity) && (1..=MAX_PERIOD_SECS).contains(&period_secs))
            .then_some(Limit {
                capacity,
                ticks_per_ms: capacity,
                interval: Ticks::from(period_secs) * 1000,
            })
    }

    /// `capacity` tokens, refilling at `rate`. The error says which bound a
    /// parameter breaks.
    pub fn with_rate(capacity: u64, rate: Rate) -> Result<Limit, ShieldError> {
        let out_of_range = |name, max| Err(ShieldError::OutOfRange { name, max });
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return out_of_range("capacity", MAX_CAPACITY);
        }
        if !(1..=MAX_CAPACITY).contains(&rate.tokens) {
            return out_of_range("tokens per period", MAX_CAPACITY);
        }
        if !rate.per.is_between_zero_and(1_000_000_000_000)
            || rate.per.decimals > MAX_PERIOD_DECIMALS
        {
            return Err(ShieldError::BadRate(
                "the period must be above 0 and below 1e12 seconds, with at most 6 decimals",
            ));
        }
        let ticks_per_ms = u128::from(rate.tokens) * u128::from(10u64.pow(rate.per.decimals));
        let ticks_per_ms = u64::try_from(ticks_per_ms)
            .ok()
            .filter(|&t| t <= MAX_TICKS_PER_MS)
            .ok_or(ShieldError::BadRate(
                "the rate is too fine: tokens per period times 10^(decimals of the period) must be at most 1e18",
            ))?;
        Ok(Limit {
            capacity,
            ticks_per_ms,
            interval: Ticks::from(rate.per.units) * 1000,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Ticks in one millisecond.
    pub(crate) fn ticks_per_ms(&self) -> Ticks {
        Ticks::from(self.ticks_per_ms)
    }

    /// Ticks needed to refill one token.
    pub(crate) fn interval(&self) -> Ticks {
        self.interval
    }

    /// Ticks needed to refill the whole bucket: `capacity * interval`.
    pub(crate) fn burst(&self) -> Ticks {
        Ticks::from(self.capacity) * self.interval
    }

    /// The tick that starts millisecond `ms`.
    pub(crate) fn ms_to_ticks(&self, ms: u64) -> Ticks {
        Ticks::from(ms) * self.ticks_per_ms()
    }
}

/// `a / b` rounded down (`b > 0`), in 64-bit arithmetic when both fit: a
/// 128-bit division is a slow library call, and with ordinary parameters the
/// operands are far below 2^64.
#[inline]
pub(crate) fn div_floor(a: Ticks, b: Ticks) -> Ticks {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) if b != 0 => Ticks::from(a / b),
        _ => a.checked_div(b).unwrap_or(Ticks::MAX),
    }
}

/// `a / b` rounded up (`b > 0`); see [`div_floor`].
#[inline]
pub(crate) fn div_ceil(a: Ticks, b: Ticks) -> Ticks {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) if b != 0 => Ticks::from(a.div_ceil(b)),
        _ if b == 0 => Ticks::MAX,
        _ => a.div_ceil(b),
    }
}

/// [`div_ceil`] as a `u64` count (of milliseconds), saturating.
pub(crate) fn ceil_div_u64(a: Ticks, b: Ticks) -> u64 {
    u64::try_from(div_ceil(a, b)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_exact_decimals() {
        let p = |t: &[u8]| Seconds::parse(t);
        assert_eq!(p(b"60"), Some(Seconds::whole(60)));
        assert_eq!(
            p(b"0.5"),
            Some(Seconds {
                units: 5,
                decimals: 1
            })
        );
        assert_eq!(p(b".5"), p(b"0.50"));
        assert_eq!(p(b"1."), Some(Seconds::whole(1)));
        assert_eq!(
            p(b"0.000001"),
            Some(Seconds {
                units: 1,
                decimals: 6
            })
        );
        for bad in [
            &b""[..],
            b".",
            b"0.0000001",
            b"1e3",
            b"-1",
            b"+1",
            b" 1",
            b"1.2.3",
            b"inf",
            b"1,5",
            b"0x10",
            b"1.5 ",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert!(!p(b"0").unwrap().is_between_zero_and(1));
        assert!(p(b"999999999999.999999")
            .unwrap()
            .is_between_zero_and(1_000_000_000_000));
        assert!(!p(b"1000000000000")
            .unwrap()
            .is_between_zero_and(1_000_000_000_000));
    }

    #[test]
    fn shield_limits_keep_their_ticks() {
        // SHIELD.absorb's tick is 1/capacity ms and its token period*1000
        // ticks, as stored in every bucket written so far.
        let l = Limit::new(30, 60).unwrap();
        assert_eq!((l.ticks_per_ms(), l.interval()), (30, 60_000));
        let rate = Rate {
            tokens: 30,
            per: Seconds::whole(60),
        };
        assert_eq!(Limit::with_rate(30, rate), Ok(l));
        // 3 tokens per 0.25 s: a tick is 1/300 ms, a token 250 ticks... of
        // 1/300 ms: 83 1/3 ms.
        let fine = Limit::with_rate(
            5,
            Rate {
                tokens: 3,
                per: Seconds::parse(b"0.25").unwrap(),
            },
        )
        .unwrap();
        assert_eq!((fine.ticks_per_ms(), fine.interval()), (300, 25_000));
    }

    #[test]
    fn bounds() {
        assert!(Limit::new(MAX_CAPACITY, MAX_PERIOD_SECS).is_some());
        assert!(Limit::new(MAX_CAPACITY + 1, 1).is_none());
        assert!(Limit::new(1, MAX_PERIOD_SECS + 1).is_none());
        assert!(Limit::new(0, 1).is_none());
        assert!(Limit::new(1, 0).is_none());
        let rate = |tokens, per: &[u8]| Rate {
            tokens,
            per: Seconds::parse(per).unwrap(),
        };
        // The finest rate: 10^18 ticks per millisecond.
        assert!(Limit::with_rate(MAX_CAPACITY, rate(MAX_CAPACITY, b"999999999999.999")).is_ok());
        assert!(Limit::with_rate(MAX_CAPACITY, rate(MAX_CAPACITY, b"999999999999.9999")).is_err());
        assert!(Limit::with_rate(
            MAX_CAPACITY,
            rate(1_000_000_000_000, b"999999999999.999999")
        )
        .is_ok());
        assert!(Limit::with_rate(1, rate(1, b"1000000000000")).is_err());
        assert!(Limit::with_rate(1, rate(0, b"1")).is_err());
    }

    #[test]
    fn divisions_in_both_widths() {
        for (a, b) in [
            (7u128, 2u128),
            (u128::from(u64::MAX) + 5, 3),
            (0, 9),
            (9, 9),
        ] {
            assert_eq!(div_floor(a, b), a / b);
            assert_eq!(div_ceil(a, b), a.div_ceil(b));
        }
    }
}
