//! Test-only helpers: a deterministic random generator and exact rationals.

/// SplitMix64: small, deterministic, good enough to drive property tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn below_u128(&mut self, n: u128) -> u128 {
        let wide = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        wide % n
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An exact rational `num / den`, always normalised (`den > 0`). Operations
/// go through the least common multiple of the denominators, so values whose
/// denominators divide a common bound stay far from `i128` overflow; any
/// overflow panics (checked arithmetic) instead of giving a wrong answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rational {
    num: i128,
    den: i128,
}

impl Rational {
    pub fn new(num: i128, den: i128) -> Rational {
        assert!(den != 0, "zero denominator");
        let g = gcd(num, den).max(1);
        let sign = if den < 0 { -1 } else { 1 };
        Rational {
            num: sign * num / g,
            den: sign * den / g,
        }
    }

    pub fn int(n: i128) -> Rational {
        Rational { num: n, den: 1 }
    }

    /// Both numerators over the least common denominator.
    fn common(self, other: Rational) -> (i128, i128, i128) {
        let l = (self.den / gcd(self.den, other.den))
            .checked_mul(other.den)
            .expect("lcm overflow");
        let a = self.num.checked_mul(l / self.den).expect("overflow");
        let b = other.num.checked_mul(l / other.den).expect("overflow");
        (a, b, l)
    }

    pub fn add(self, other: Rational) -> Rational {
        let (a, b, l) = self.common(other);
        Rational::new(a.checked_add(b).expect("overflow"), l)
    }

    pub fn sub(self, other: Rational) -> Rational {
        let (a, b, l) = self.common(other);
        Rational::new(a.checked_sub(b).expect("overflow"), l)
    }

    pub fn ge(self, other: Rational) -> bool {
        let (a, b, _) = self.common(other);
        a >= b
    }

    pub fn min(self, other: Rational) -> Rational {
        if self.ge(other) {
            other
        } else {
            self
        }
    }

    pub fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }
}
