//! Decimal digits of a `u64` on the stack (for stored values and replicated
//! expiries: this runs on every admitted call).

use crate::error::ShieldError;

/// A stack buffer for the decimal digits of a `u64` (at most 20).
#[derive(Default)]
pub struct Decimal([u8; 20]);

const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl Decimal {
    /// The decimal digits of `n`, two per division, without allocating.
    ///
    /// ```
    /// let mut d = shield_engine::Decimal::default();
    /// assert_eq!(d.format(1_700_000_000_123)?, b"1700000000123");
    /// assert_eq!(d.format(0)?, b"0");
    /// # Ok::<(), shield_engine::ShieldError>(())
    /// ```
    pub fn format(&mut self, mut n: u64) -> Result<&[u8], ShieldError> {
        // Fill from the end, two digits per division. 20 bytes hold every
        // u64, so no write below falls outside the buffer; `start` only goes
        // down by what was written.
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
        match self.0.get(start..) {
            Some(digits) if n < 100 && !digits.is_empty() => Ok(digits),
            _ => Err(ShieldError::Internal(
                "a number could not be formatted".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Rng;

    #[test]
    fn decimal_digits() {
        let mut rng = Rng::new(3);
        let samples = (0..10_000).map(|_| rng.next_u64() >> rng.below(64));
        for n in [0, 7, 10, 99, 100, 101, 1_000_000_000_000_000, u64::MAX]
            .into_iter()
            .chain(samples)
        {
            let mut d = Decimal::default();
            assert_eq!(d.format(n).unwrap(), n.to_string().as_bytes());
        }
    }
}
