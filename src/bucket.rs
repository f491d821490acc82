//! The token bucket, free of Redis: exact integer arithmetic on a simulated
//! or real millisecond clock.
//!
//! # Representation
//!
//! A bucket of `capacity` tokens that refills from empty to full in `period`
//! seconds gains `capacity / period` tokens per second. To keep that exact we
//! measure time in *ticks* of `1 / capacity` millisecond: one token then takes
//! exactly `period * 1000` ticks to refill ([`Limit::interval`]), and a full
//! bucket is `capacity * period * 1000` ticks of refill ([`Limit::burst`]).
//!
//! The state of a bucket is one number, its *full-again time* (`full_at`, the
//! theoretical arrival time of GCRA): the tick at which the bucket will be
//! full again if nobody takes from it. A bucket with `full_at <= now` is full;
//! otherwise it lacks `(full_at - now) / interval` tokens, fractions included.
//! Taking `n` tokens moves `full_at` forward by `n * interval`, starting from
//! `now` if the bucket was full. No refill is ever rounded away, because no
//! division happens when the state is updated; division only happens when the
//! number of whole tokens is reported.
//!
//! All arithmetic is done in `u128` on inputs bounded by [`MAX_CAPACITY`] and
//! [`MAX_PERIOD_SECS`], so nothing can overflow (see the `limits_never_overflow`
//! test).

/// Largest capacity accepted (10^15 tokens).
pub const MAX_CAPACITY: u64 = 1_000_000_000_000_000;
/// Largest period accepted, in seconds (10^10 s, about 317 years).
pub const MAX_PERIOD_SECS: u64 = 10_000_000_000;

/// Ticks per millisecond for a given capacity: a tick is `1/capacity` ms.
pub type Ticks = u128;

/// The parameters of a bucket, validated: `1 <= capacity <= MAX_CAPACITY`,
/// `1 <= period <= MAX_PERIOD_SECS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    capacity: u64,
    period_secs: u64,
}

impl Limit {
    /// Returns `None` when a parameter is zero or above its maximum.
    pub fn new(capacity: u64, period_secs: u64) -> Option<Limit> {
        if (1..=MAX_CAPACITY).contains(&capacity) && (1..=MAX_PERIOD_SECS).contains(&period_secs) {
            Some(Limit {
                capacity,
                period_secs,
            })
        } else {
            None
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn period_secs(&self) -> u64 {
        self.period_secs
    }

    /// Ticks in one millisecond (a tick is `1/capacity` ms).
    pub fn ticks_per_ms(&self) -> Ticks {
        Ticks::from(self.capacity)
    }

    /// Ticks needed to refill one token: `period * 1000`.
    pub fn interval(&self) -> Ticks {
        Ticks::from(self.period_secs) * 1000
    }

    /// Ticks needed to refill the whole bucket: `capacity * period * 1000`.
    pub fn burst(&self) -> Ticks {
        Ticks::from(self.capacity) * self.interval()
    }

    /// The tick that starts millisecond `ms`.
    pub fn ms_to_ticks(&self, ms: u64) -> Ticks {
        Ticks::from(ms) * self.ticks_per_ms()
    }
}

/// What a bucket looks like at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Whole tokens that can be taken now (0..=capacity).
    pub available: u64,
    /// Ticks of refill missing from a full bucket (0 when full). Can exceed
    /// `burst` only when the clock went backwards after the last write.
    pub deficit: Ticks,
}

/// The result of an absorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The tokens were taken: the new full-again tick must be stored, and
    /// `remaining` whole tokens are left.
    Admitted { full_at: Ticks, remaining: u64 },
    /// Not enough tokens: nothing changes. `available` whole tokens are there.
    Denied { available: u64 },
}

/// The level of a bucket whose full-again tick is `full_at` (`None`: no
/// stored state, a full bucket) at tick `now`.
pub fn level(limit: &Limit, full_at: Option<Ticks>, now: Ticks) -> Level {
    let deficit = match full_at {
        Some(full_at) if full_at > now => full_at - now,
        _ => 0,
    };
    // burst - deficit is the refill present, in ticks; whole tokens are that
    // divided by the interval, rounded down. A deficit above burst (clock went
    // backwards) means no token at all, never a negative or wrapped count.
    let present = limit.burst().saturating_sub(deficit);
    let available = div_floor(present, limit.interval());
    Level {
        // present <= burst, so available <= capacity, which fits in u64.
        available: u64::try_from(available).unwrap_or(limit.capacity),
        deficit,
    }
}

/// Takes `tokens` from the bucket at tick `now` if it holds that many.
///
/// `tokens` may be anything, zero excepted by the caller's validation: more
/// than `capacity` is simply denied.
pub fn absorb(limit: &Limit, full_at: Option<Ticks>, now: Ticks, tokens: u64) -> Decision {
    let before = level(limit, full_at, now);
    if tokens > before.available {
        return Decision::Denied {
            available: before.available,
        };
    }
    // tokens <= available <= capacity, so the products below are bounded by
    // burst and cannot overflow.
    let cost = Ticks::from(tokens) * limit.interval();
    let deficit = before.deficit + cost;
    let remaining = div_floor(limit.burst() - deficit, limit.interval());
    Decision::Admitted {
        full_at: now + deficit,
        remaining: u64::try_from(remaining).unwrap_or(0),
    }
}

/// Milliseconds from `now` until the bucket is full again, rounded up (0 when
/// already full).
pub fn ms_until_full(limit: &Limit, full_at: Option<Ticks>, now: Ticks) -> u64 {
    let deficit = level(limit, full_at, now).deficit;
    ceil_div(deficit, limit.ticks_per_ms())
}

/// Milliseconds from `now` until at least `tokens` whole tokens are
/// available, rounded up: a caller that waits exactly that long (and finds
/// the bucket untouched) is admitted. `None` when `tokens > capacity` (never).
pub fn ms_until_available(
    limit: &Limit,
    full_at: Option<Ticks>,
    now: Ticks,
    tokens: u64,
) -> Option<u64> {
    if tokens > limit.capacity {
        return None;
    }
    let deficit = level(limit, full_at, now).deficit;
    // Admitted when deficit_then + tokens*interval <= burst.
    let allowed_deficit = limit.burst() - Ticks::from(tokens) * limit.interval();
    let wait_ticks = deficit.saturating_sub(allowed_deficit);
    Some(ceil_div(wait_ticks, limit.ticks_per_ms()))
}

/// Everything a gateway needs to answer a request: the decision, whole
/// tokens left (after the call when admitted, available now when denied),
/// milliseconds to wait before a retry of the same call can be admitted
/// (`Some(0)` when admitted, `None` when never: more than the capacity), and
/// milliseconds until the bucket is full again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Details {
    pub decision: Decision,
    pub remaining: u64,
    pub retry_after_ms: Option<u64>,
    pub reset_after_ms: u64,
}

/// [`absorb`] with the full answer.
pub fn absorb_with_details(
    limit: &Limit,
    full_at: Option<Ticks>,
    now: Ticks,
    tokens: u64,
) -> Details {
    let decision = absorb(limit, full_at, now, tokens);
    match decision {
        Decision::Admitted {
            full_at: after,
            remaining,
        } => Details {
            decision,
            remaining,
            retry_after_ms: Some(0),
            reset_after_ms: ms_until_full(limit, Some(after), now),
        },
        Decision::Denied { available } => Details {
            decision,
            remaining: available,
            retry_after_ms: ms_until_available(limit, full_at, now, tokens),
            reset_after_ms: ms_until_full(limit, full_at, now),
        },
    }
}

/// A read-only view of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Whole tokens that can be taken now.
    pub available: u64,
    pub capacity: u64,
    /// Milliseconds until one more whole token is available (0 when full).
    pub next_token_ms: u64,
    /// Milliseconds until the bucket is full (0 when full).
    pub full_ms: u64,
}

pub fn inspect(limit: &Limit, full_at: Option<Ticks>, now: Ticks) -> Inspection {
    let available = level(limit, full_at, now).available;
    let next_token_ms = if available >= limit.capacity {
        0
    } else {
        // available + 1 <= capacity, so a wait exists.
        ms_until_available(limit, full_at, now, available + 1).unwrap_or(0)
    };
    Inspection {
        available,
        capacity: limit.capacity,
        next_token_ms,
        full_ms: ms_until_full(limit, full_at, now),
    }
}

/// One bucket of an all-or-nothing absorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub limit: Limit,
    pub full_at: Option<Ticks>,
    pub tokens: u64,
}

/// The outcome of an all-or-nothing absorb, bucket by bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllDecision {
    /// True when every bucket had enough: then every one is charged.
    pub admitted: bool,
    /// Per bucket, in order: the decision it would take on its own.
    pub each: Vec<Decision>,
    /// Per bucket, in order: whole tokens left after the call when admitted,
    /// whole tokens available now (nothing charged) when denied.
    pub left: Vec<u64>,
    /// When denied: milliseconds until every bucket would admit its tokens
    /// (the longest of their waits); `None` when some bucket can never
    /// (tokens above its capacity). `Some(0)` when admitted.
    pub retry_after_ms: Option<u64>,
}

/// Takes the tokens from every bucket if each holds enough, else from none.
/// `now_ms` is the server clock (each bucket has its own tick size).
pub fn absorb_all(requests: &[Request], now_ms: u64) -> AllDecision {
    let each: Vec<Decision> = requests
        .iter()
        .map(|r| absorb(&r.limit, r.full_at, r.limit.ms_to_ticks(now_ms), r.tokens))
        .collect();
    let admitted = each.iter().all(|d| matches!(d, Decision::Admitted { .. }));
    let left = requests
        .iter()
        .zip(&each)
        .map(|(r, d)| match d {
            Decision::Admitted { remaining, .. } if admitted => *remaining,
            Decision::Admitted { .. } => {
                level(&r.limit, r.full_at, r.limit.ms_to_ticks(now_ms)).available
            }
            Decision::Denied { available } => *available,
        })
        .collect();
    let retry_after_ms = if admitted {
        Some(0)
    } else {
        requests.iter().try_fold(0u64, |longest, r| {
            let now = r.limit.ms_to_ticks(now_ms);
            ms_until_available(&r.limit, r.full_at, now, r.tokens).map(|w| longest.max(w))
        })
    };
    AllDecision {
        admitted,
        each,
        left,
        retry_after_ms,
    }
}

fn ceil_div(a: Ticks, b: Ticks) -> u64 {
    u64::try_from(div_ceil(a, b)).unwrap_or(u64::MAX)
}

/// `a / b` rounded down (`b > 0`), in 64-bit arithmetic when both fit: a
/// 128-bit division is a slow library call, and with ordinary parameters the
/// operands are far below 2^64.
#[inline]
pub fn div_floor(a: Ticks, b: Ticks) -> Ticks {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) if b != 0 => Ticks::from(a / b),
        _ => a / b,
    }
}

/// `a / b` rounded up (`b > 0`); see [`div_floor`].
#[inline]
pub fn div_ceil(a: Ticks, b: Ticks) -> Ticks {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) if b != 0 => Ticks::from(a.div_ceil(b)),
        _ => a.div_ceil(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Rational, Rng};

    fn lim(c: u64, p: u64) -> Limit {
        Limit::new(c, p).expect("valid limit")
    }

    /// Drives a bucket through calls at given millisecond times.
    struct Sim {
        limit: Limit,
        full_at: Option<Ticks>,
    }

    impl Sim {
        fn new(limit: Limit) -> Sim {
            Sim {
                limit,
                full_at: None,
            }
        }

        fn call(&mut self, now_ms: u64, tokens: u64) -> Option<u64> {
            let now = self.limit.ms_to_ticks(now_ms);
            match absorb(&self.limit, self.full_at, now, tokens) {
                Decision::Admitted { full_at, remaining } => {
                    self.full_at = Some(full_at);
                    Some(remaining)
                }
                Decision::Denied { .. } => None,
            }
        }
    }

    /// The reference model: the textbook token bucket with a rational level,
    /// refilled by `elapsed * capacity / (period * 1000)` at every call.
    struct Reference {
        capacity: u64,
        period_ms: u64,
        level: Rational,
        last_ms: Option<u64>,
    }

    impl Reference {
        fn new(capacity: u64, period_secs: u64) -> Reference {
            Reference {
                capacity,
                period_ms: period_secs * 1000,
                level: Rational::int(capacity as i128),
                last_ms: None,
            }
        }

        fn call(&mut self, now_ms: u64, tokens: u64) -> Option<u64> {
            if let Some(last) = self.last_ms {
                let elapsed = now_ms.saturating_sub(last) as i128;
                let refill = Rational::new(elapsed * self.capacity as i128, self.period_ms as i128);
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

    #[test]
    fn the_documented_example() {
        let mut b = Sim::new(lim(30, 60));
        assert_eq!(b.call(1_000, 13), Some(17));
        assert_eq!(b.call(1_000, 13), Some(4));
        assert_eq!(b.call(1_000, 13), None);
    }

    #[test]
    fn more_than_capacity_is_always_denied() {
        let mut b = Sim::new(lim(5, 1));
        assert_eq!(b.call(0, 6), None);
        assert_eq!(b.call(0, u64::MAX), None);
        assert_eq!(b.call(0, 5), Some(0));
    }

    #[test]
    fn a_denied_call_changes_nothing() {
        let limit = lim(10, 1);
        let now = limit.ms_to_ticks(5_000);
        let full_at = Some(now + limit.burst() / 2);
        assert_eq!(
            absorb(&limit, full_at, now, 6),
            Decision::Denied { available: 5 }
        );
    }

    #[test]
    fn refill_is_exactly_capacity_over_period() {
        // 3 tokens per 7 s: after draining, one token every 2333.33.. ms.
        let mut b = Sim::new(lim(3, 7));
        assert_eq!(b.call(0, 3), Some(0));
        assert_eq!(b.call(2_333, 1), None);
        assert_eq!(b.call(2_334, 1), Some(0));
        // The 0.67 ms of refill beyond the token was kept: the next token is
        // due at 4666.67 ms, not at 2334 + 2333.33.
        assert_eq!(b.call(4_666, 1), None);
        assert_eq!(b.call(4_667, 1), Some(0));
    }

    #[test]
    fn drained_bucket_polled_every_90ms_admits_90_percent() {
        let mut b = Sim::new(lim(10, 1));
        assert_eq!(b.call(0, 10), Some(0));
        let calls = 1_000;
        let admitted = (1..=calls).filter(|i| b.call(i * 90, 1).is_some()).count();
        // 90 000 ms at 10 tokens/s is 900 tokens, exactly.
        assert_eq!(admitted, 900);
    }

    #[test]
    fn refill_never_exceeds_capacity() {
        let mut b = Sim::new(lim(4, 2));
        assert_eq!(b.call(0, 1), Some(3));
        assert_eq!(b.call(1_000_000, 1), Some(3));
        assert_eq!(b.call(1_000_000, 4), None);
    }

    #[test]
    fn clock_going_backwards_never_creates_tokens() {
        let limit = lim(10, 10);
        let mut b = Sim::new(limit);
        assert_eq!(b.call(100_000, 5), Some(5));
        // A promoted replica whose clock is 30 s behind.
        for back in [1, 999, 5_000, 30_000, 100_000] {
            let now = limit.ms_to_ticks(100_000 - back);
            let lvl = level(&limit, b.full_at, now);
            assert!(lvl.available <= 5, "back {back}: {lvl:?}");
        }
        assert_eq!(b.call(70_000, 1), None);
        // Once the clock catches up, refill resumes from where it was.
        assert_eq!(b.call(100_000, 5), Some(0));
    }

    #[test]
    fn limits_never_overflow() {
        let limit = lim(MAX_CAPACITY, MAX_PERIOD_SECS);
        // Far future: year ~292 million in ms is beyond u64 ms anyway; use max.
        let now = limit.ms_to_ticks(u64::MAX);
        let full_at = Some(now + limit.burst());
        assert_eq!(level(&limit, full_at, now).available, 0);
        assert_eq!(ms_until_full(&limit, full_at, now), MAX_PERIOD_SECS * 1000);
        match absorb(&limit, None, now, MAX_CAPACITY) {
            Decision::Admitted { full_at, remaining } => {
                assert_eq!(remaining, 0);
                assert_eq!(full_at, now + limit.burst());
            }
            other => panic!("{other:?}"),
        }
        assert!(Limit::new(MAX_CAPACITY + 1, 1).is_none());
        assert!(Limit::new(1, MAX_PERIOD_SECS + 1).is_none());
        assert!(Limit::new(0, 1).is_none());
        assert!(Limit::new(1, 0).is_none());
    }

    #[test]
    fn agrees_with_the_rational_reference_model() {
        let mut rng = Rng::new(0x5eed_1234);
        for case in 0..3_000 {
            let capacity = match rng.below(4) {
                0 => 1 + rng.below(5),
                1 => 1 + rng.below(100),
                2 => 1 + rng.below(1_000_000),
                _ => 1 + rng.below(MAX_CAPACITY),
            };
            let period = match rng.below(3) {
                0 => 1 + rng.below(3),
                1 => 1 + rng.below(3_600),
                _ => 1 + rng.below(10_000_000),
            };
            let mut sim = Sim::new(lim(capacity, period));
            let mut reference = Reference::new(capacity, period);
            let mut now = rng.below(2_000_000_000_000);
            for step in 0..60 {
                now += match rng.below(4) {
                    0 => 0,
                    1 => rng.below(10),
                    2 => rng.below(period * 1000 / capacity.min(1000) + 1),
                    _ => rng.below(period * 2000),
                };
                let tokens = match rng.below(3) {
                    0 => 1,
                    1 => 1 + rng.below(capacity.min(20)),
                    _ => 1 + rng.below(capacity + 2),
                };
                let got = sim.call(now, tokens);
                let want = reference.call(now, tokens);
                assert_eq!(
                    got, want,
                    "case {case} step {step}: capacity {capacity} period {period} now {now} tokens {tokens}"
                );
            }
        }
    }

    #[test]
    fn admitted_never_exceeds_capacity_plus_rate_times_t() {
        let mut rng = Rng::new(42);
        for _ in 0..500 {
            let capacity = 1 + rng.below(50);
            let period = 1 + rng.below(20);
            let mut sim = Sim::new(lim(capacity, period));
            let start = rng.below(1 << 40);
            let mut now = start;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for _ in 0..300 {
                now += rng.below(period * 1000 / capacity + 5);
                let tokens = 1 + rng.below(capacity.min(4));
                if sim.call(now, tokens).is_some() {
                    admitted.push((now, tokens));
                }
            }
            // Every window [t_i, t_j] of admitted calls: sum <= C + rate * t.
            for i in 0..admitted.len() {
                let mut sum = 0u128;
                for j in i..admitted.len() {
                    sum += u128::from(admitted[j].1);
                    let t = u128::from(admitted[j].0 - admitted[i].0);
                    let bound = (u128::from(capacity) * (u128::from(period) * 1000 + t))
                        / (u128::from(period) * 1000);
                    assert!(sum <= bound, "window {i}..{j}: {sum} > {bound}");
                }
            }
        }
    }

    #[test]
    fn a_client_within_its_rate_is_never_denied() {
        // "Within its rate" for a bucket of capacity C refilling at r per ms:
        // over every window [t_i, t_j] of its calls, the client takes at most
        // C + r * (t_j - t_i) tokens. An exact token bucket must admit every
        // such client, whatever the burst pattern.
        let mut rng = Rng::new(7);
        for _ in 0..300 {
            let capacity = 1 + rng.below(100);
            let period = 1 + rng.below(60);
            let period_ms = u128::from(period) * 1000;
            let mut sim = Sim::new(lim(capacity, period));
            let mut now = rng.below(1 << 40);
            let mut calls: Vec<(u64, u64)> = Vec::new();
            for _ in 0..300 {
                now += rng.below(period * 1000 / capacity + 3);
                // The most this call may take without any window overflowing.
                let mut room = u128::from(capacity);
                let mut sum = 0u128;
                for &(t, n) in calls.iter().rev() {
                    sum += u128::from(n);
                    let bound =
                        u128::from(capacity) * (period_ms + u128::from(now - t)) / period_ms;
                    room = room.min(bound.saturating_sub(sum));
                }
                if room == 0 {
                    continue;
                }
                let tokens = 1 + rng.below(u64::try_from(room).unwrap_or(1));
                assert!(
                    sim.call(now, tokens).is_some(),
                    "denied within rate: c {capacity} p {period} calls {} tokens {tokens}",
                    calls.len()
                );
                calls.push((now, tokens));
            }
        }
    }

    #[test]
    fn details_of_admitted_and_denied_calls() {
        let limit = lim(10, 10); // 1 token/s
        let now = limit.ms_to_ticks(1_000_000);
        let d = absorb_with_details(&limit, None, now, 4);
        assert_eq!(
            (d.remaining, d.retry_after_ms, d.reset_after_ms),
            (6, Some(0), 4_000)
        );
        let Decision::Admitted { full_at, .. } = d.decision else {
            panic!("admitted")
        };
        let d = absorb_with_details(&limit, Some(full_at), now, 8);
        assert!(matches!(d.decision, Decision::Denied { available: 6 }));
        assert_eq!(
            (d.remaining, d.retry_after_ms, d.reset_after_ms),
            (6, Some(2_000), 4_000)
        );
        let d = absorb_with_details(&limit, Some(full_at), now, 11);
        assert_eq!(d.retry_after_ms, None);
    }

    #[test]
    fn inspect_agrees_with_what_absorb_would_do() {
        let mut rng = Rng::new(5);
        for _ in 0..3_000 {
            let limit = lim(1 + rng.below(500), 1 + rng.below(100));
            let now_ms = 1_000_000 + rng.below(1_000_000);
            let now = limit.ms_to_ticks(now_ms);
            let full_at = Some(now + rng.below_u128(limit.burst() + 1));
            let view = inspect(&limit, full_at, now);
            // Exactly `available` tokens can be taken now, not one more.
            if view.available > 0 {
                assert!(matches!(
                    absorb(&limit, full_at, now, view.available),
                    Decision::Admitted { remaining: 0, .. }
                ));
            }
            assert!(matches!(
                absorb(&limit, full_at, now, view.available + 1),
                Decision::Denied { .. }
            ));
            // One more token exactly `next_token_ms` later, not a ms sooner.
            if view.available < view.capacity {
                let at = |ms| level(&limit, full_at, limit.ms_to_ticks(ms)).available;
                assert_eq!(at(now_ms + view.next_token_ms), view.available + 1);
                assert_eq!(at(now_ms + view.next_token_ms - 1), view.available);
            } else {
                assert_eq!((view.next_token_ms, view.full_ms), (0, 0));
            }
        }
    }

    #[test]
    fn absorb_all_charges_all_or_none() {
        let a = lim(10, 10);
        let b = lim(3, 60);
        let now_ms = 5_000_000;
        let req = |limit: Limit, tokens| Request {
            limit,
            full_at: None,
            tokens,
        };
        let all = absorb_all(&[req(a, 2), req(b, 3)], now_ms);
        assert!(all.admitted);
        assert_eq!(all.retry_after_ms, Some(0));
        assert_eq!(all.left, [8, 0]);
        // b is drained now: the next call is denied for both, and says when
        // both would admit it: b refills a token every 20 s.
        let full_at = |d: &Decision| match d {
            Decision::Admitted { full_at, .. } => Some(*full_at),
            Decision::Denied { .. } => None,
        };
        let next = [
            Request {
                limit: a,
                full_at: full_at(&all.each[0]),
                tokens: 1,
            },
            Request {
                limit: b,
                full_at: full_at(&all.each[1]),
                tokens: 1,
            },
        ];
        let denied = absorb_all(&next, now_ms);
        assert!(!denied.admitted);
        // Nothing charged: a still holds its 8 tokens, b none.
        assert_eq!(denied.left, [8, 0]);
        assert!(matches!(denied.each[0], Decision::Admitted { .. }));
        assert!(matches!(denied.each[1], Decision::Denied { available: 0 }));
        assert_eq!(denied.retry_after_ms, Some(20_000));
        assert!(absorb_all(&next, now_ms + 20_000).admitted);
        assert!(!absorb_all(&next, now_ms + 19_999).admitted);
        // A bucket asked for more than its capacity can never admit.
        assert_eq!(
            absorb_all(&[req(a, 1), req(b, 4)], now_ms).retry_after_ms,
            None
        );
    }

    #[test]
    fn wait_times_are_exact_to_the_millisecond() {
        let mut rng = Rng::new(99);
        for _ in 0..2_000 {
            let capacity = 1 + rng.below(1_000);
            let period = 1 + rng.below(100);
            let limit = lim(capacity, period);
            let now_ms = 1_000_000 + rng.below(1_000_000);
            let now = limit.ms_to_ticks(now_ms);
            let full_at = Some(now + rng.below_u128(limit.burst() + 1));
            let tokens = 1 + rng.below(capacity);
            let wait = ms_until_available(&limit, full_at, now, tokens).expect("<= capacity");
            let at = |ms: u64| absorb(&limit, full_at, limit.ms_to_ticks(ms), tokens);
            assert!(matches!(at(now_ms + wait), Decision::Admitted { .. }));
            if wait > 0 {
                assert!(matches!(at(now_ms + wait - 1), Decision::Denied { .. }));
            }
            let full = ms_until_full(&limit, full_at, now);
            assert_eq!(
                level(&limit, full_at, limit.ms_to_ticks(now_ms + full)).deficit,
                0
            );
            if full > 0 {
                assert!(level(&limit, full_at, limit.ms_to_ticks(now_ms + full - 1)).deficit > 0);
            }
        }
    }
}
