//! Test-only: the exact rational reference model, a deterministic random
//! generator for the seeded cases, and the properties every test checks.

use crate::bucket::{Bucket, Decision};
use crate::limit::{Limit, Ticks};
use crate::stored::decode;

pub fn lim(capacity: u64, period_secs: u64) -> Limit {
    Limit::new(capacity, period_secs).expect("valid limit")
}

/// SplitMix64: small, deterministic, good enough to drive seeded cases.
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

/// Drives one bucket through calls at given millisecond times, storing its
/// state between calls as the server does (encoded, then decoded).
pub struct Sim {
    limit: Limit,
    stored: Option<(Vec<u8>, i64)>,
}

impl Sim {
    pub fn new(limit: Limit) -> Sim {
        Sim {
            limit,
            stored: None,
        }
    }

    /// The bucket as a call at `now_ms` reads it.
    pub fn state(&self, now_ms: u64) -> Bucket {
        match &self.stored {
            // An expired key is gone: a full bucket.
            Some((value, expire)) if (now_ms as i64) < *expire => {
                decode(self.limit, value, Some(*expire), now_ms)
                    .expect("decodes")
                    .bucket
            }
            _ => Bucket::full(self.limit, now_ms),
        }
    }

    pub fn call(&mut self, now_ms: u64, tokens: u64) -> Option<u64> {
        match self.state(now_ms).absorb(tokens) {
            Decision::Admitted { after, tokens_left } => {
                let enc = after.encode().expect("encodes");
                self.stored = Some((
                    enc.value().expect("value").to_vec(),
                    enc.expire_at_ms() as i64,
                ));
                Some(tokens_left)
            }
            Decision::Denied { .. } => None,
        }
    }
}

/// The reference model: the textbook token bucket with a rational level,
/// refilled by `elapsed * capacity / (period * 1000)` at every call.
pub struct Reference {
    capacity: u64,
    /// Tokens refilled per millisecond.
    per_ms: Rational,
    level: Rational,
    last_ms: Option<u64>,
}

impl Reference {
    /// `capacity` tokens refilling `capacity` per `period_secs` (SHIELD).
    pub fn new(capacity: u64, period_secs: u64) -> Reference {
        Reference::with_rate(capacity, capacity, period_secs, 0)
    }

    /// `capacity` tokens refilling `tokens` per `units / 10^decimals` s.
    pub fn with_rate(capacity: u64, tokens: u64, units: u64, decimals: u32) -> Reference {
        Reference {
            capacity,
            per_ms: Rational::new(
                i128::from(tokens) * 10i128.pow(decimals),
                i128::from(units) * 1000,
            ),
            level: Rational::int(capacity as i128),
            last_ms: None,
        }
    }

    pub fn call(&mut self, now_ms: u64, tokens: u64) -> Option<u64> {
        if let Some(last) = self.last_ms {
            let elapsed = now_ms.saturating_sub(last) as i128;
            let refill = self.per_ms.times(elapsed);
            self.level = self
                .level
                .add(refill)
                .min(Rational::int(self.capacity as i128));
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
        let want = Rational::int(tokens as i128);
        if self.level.ge(want) {
            self.level = self.level.sub(want);
            Some(self.level.floor() as u64)
        } else {
            None
        }
    }
}

/// Every window `[t_i, t_j]` of admitted `(ms, tokens)` calls took at most
/// `capacity + rate * (t_j - t_i)`, rounded down.
pub fn assert_every_window_within_rate(admitted: &[(u64, u64)], capacity: u64, period: u64) {
    for (i, &(start, _)) in admitted.iter().enumerate() {
        let mut sum = 0u128;
        for &(at, tokens) in &admitted[i..] {
            sum += u128::from(tokens);
            let t = u128::from(at - start);
            let period_ms = u128::from(period) * 1000;
            let bound = u128::from(capacity) * (period_ms + t) / period_ms;
            assert!(sum <= bound, "window from {start} to {at}: {sum} > {bound}");
        }
    }
}

/// The most a call at `now` may take without any window of `calls` (and
/// it) going above `capacity + rate * t`.
pub fn room_within_rate(calls: &[(u64, u64)], now: u64, capacity: u64, period: u64) -> u64 {
    let period_ms = u128::from(period) * 1000;
    let mut room = u128::from(capacity);
    let mut sum = 0u128;
    for &(t, n) in calls.iter().rev() {
        sum += u128::from(n);
        let bound = u128::from(capacity) * (period_ms + u128::from(now - t)) / period_ms;
        room = room.min(bound.saturating_sub(sum));
    }
    u64::try_from(room).unwrap_or(u64::MAX)
}

/// A bucket stored with `old` and read with `new`: its full-again moment is
/// never earlier than the truth and less than one `new` tick later; exact
/// when the capacity is the same.
pub fn assert_capacity_change_is_conservative(
    old: Limit,
    new: Limit,
    base_ms: u64,
    full_at: Ticks,
) {
    let now = old.ms_to_ticks(base_ms);
    let enc = Bucket::from_ticks(old, now, full_at)
        .encode()
        .expect("encodes");
    let d = decode(
        new,
        enc.value().expect("value"),
        Some(enc.expire_at_ms() as i64),
        base_ms,
    )
    .expect("decodes");
    let reread = d.bucket.full_at().expect("a state");
    // Compare the instants full_at/old_capacity and reread/new_capacity (ms),
    // counted from base_ms so the products stay within u128.
    let truth = (full_at - now) * new.ticks_per_ms();
    let seen = (reread - new.ms_to_ticks(base_ms)) * old.ticks_per_ms();
    assert!(seen >= truth, "{old:?} -> {new:?}: earlier");
    assert!(
        seen - truth < old.ticks_per_ms(),
        "{old:?} -> {new:?}: more than a tick later"
    );
    if new.capacity() == old.capacity() {
        assert_eq!(reread, full_at);
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

    pub fn times(self, n: i128) -> Rational {
        Rational::new(self.num.checked_mul(n).expect("overflow"), self.den)
    }

    pub fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }
}
