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
        let mut len = 0;
        // 20 bytes are 10 pairs: room for every u64 (at most 20 digits).
        for slot in self.0.rchunks_exact_mut(2) {
            if n < 10 {
                if let Some(last) = slot.last_mut() {
                    *last = b'0' + n as u8;
                    len += 1;
                }
                break;
            }
            let i = (n % 100) as usize * 2;
            if let Some(pair) = PAIRS.get(i..i + 2) {
                slot.copy_from_slice(pair);
            }
            len += 2;
            n /= 100;
            if n == 0 {
                break;
            }
        }
        let start = self.0.len().saturating_sub(len);
        match self.0.get(start..) {
            Some(digits) if len > 0 => Ok(digits),
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
