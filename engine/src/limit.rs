//! A bucket's parameters, and the tick arithmetic they define.
//!
//! A bucket of `capacity` tokens that refills from empty to full in `period`
//! seconds gains `capacity / period` tokens per second. To keep that exact,
//! time is measured in *ticks* of `1 / capacity` millisecond: one token then
//! takes exactly `period * 1000` ticks to refill (the *interval*), and a full
//! bucket is `capacity * period * 1000` ticks of refill (the *burst*). Ticks
//! never leave this crate: callers speak milliseconds.

/// Largest capacity accepted (10^15 tokens).
pub const MAX_CAPACITY: u64 = 1_000_000_000_000_000;
/// Largest period accepted, in seconds (10^10 s, about 317 years).
pub const MAX_PERIOD_SECS: u64 = 10_000_000_000;

/// A count of `1/capacity` ms. All arithmetic is done in `u128` on inputs
/// bounded by [`MAX_CAPACITY`] and [`MAX_PERIOD_SECS`], so nothing overflows.
pub(crate) type Ticks = u128;

/// The parameters of a bucket, validated: `1 <= capacity <= MAX_CAPACITY`,
/// `1 <= period <= MAX_PERIOD_SECS`.
///
/// ```
/// use shield_engine::{Limit, MAX_CAPACITY};
/// let limit = Limit::new(100, 60).ok_or("invalid")?;
/// assert_eq!((limit.capacity(), limit.period_secs()), (100, 60));
/// assert!(Limit::new(0, 60).is_none());
/// assert!(Limit::new(MAX_CAPACITY + 1, 60).is_none());
/// # Ok::<(), &str>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    capacity: u64,
    period_secs: u64,
}

impl Limit {
    /// Returns `None` when a parameter is zero or above its maximum.
    pub fn new(capacity: u64, period_secs: u64) -> Option<Limit> {
        ((1..=MAX_CAPACITY).contains(&capacity) && (1..=MAX_PERIOD_SECS).contains(&period_secs))
            .then_some(Limit {
                capacity,
                period_secs,
            })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn period_secs(&self) -> u64 {
        self.period_secs
    }

    /// Ticks in one millisecond (a tick is `1/capacity` ms).
    pub(crate) fn ticks_per_ms(&self) -> Ticks {
        Ticks::from(self.capacity)
    }

    /// Ticks needed to refill one token: `period * 1000`.
    pub(crate) fn interval(&self) -> Ticks {
        Ticks::from(self.period_secs) * 1000
    }

    /// Ticks needed to refill the whole bucket: `capacity * period * 1000`.
    pub(crate) fn burst(&self) -> Ticks {
        Ticks::from(self.capacity) * self.interval()
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
    fn bounds() {
        assert!(Limit::new(MAX_CAPACITY, MAX_PERIOD_SECS).is_some());
        assert!(Limit::new(MAX_CAPACITY + 1, 1).is_none());
        assert!(Limit::new(1, MAX_PERIOD_SECS + 1).is_none());
        assert!(Limit::new(0, 1).is_none());
        assert!(Limit::new(1, 0).is_none());
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
