//! The token bucket at one instant: GCRA in exact integer ticks.
//!
//! The state of a bucket is one number, its *full-again tick* (the
//! theoretical arrival time of GCRA): the tick at which it will be full again
//! if nobody takes from it. At `now` it lacks `(full_at - now) / interval`
//! tokens, fractions included. Taking `n` tokens moves `full_at` forward by
//! `n * interval`, starting from `now` if the bucket was full. No refill is
//! ever rounded away: no division happens when the state changes; division
//! only happens when whole tokens or waits are reported.

use crate::limit::{ceil_div_u64, div_floor, Limit, Ticks};

/// A bucket as seen at one instant of the server's millisecond clock: its
/// limit, that instant, and its full-again moment.
///
/// ```
/// use shield_engine::{Bucket, Decision, Limit};
/// let limit = Limit::new(30, 60).ok_or("limit")?; // 30 tokens, full again in 60 s
/// let bucket = Bucket::full(limit, 1_000);         // no stored state: full
/// let Decision::Admitted { after, tokens_left } = bucket.absorb(13) else {
///     return Err("denied");
/// };
/// assert_eq!(tokens_left, 17);
/// let Decision::Admitted { after, tokens_left: 4 } = after.absorb(13) else {
///     return Err("denied");
/// };
/// assert_eq!(after.absorb(13), Decision::Denied { tokens_left: 4 });
/// // Half a token per second: 2 s later there are 5.
/// assert_eq!(after.at(3_000).tokens_left(), 5);
/// # Ok::<(), &str>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    limit: Limit,
    /// The instant, in ticks of `limit`.
    now: Ticks,
    /// The full-again tick; `None`: no state (a full bucket).
    full_at: Option<Ticks>,
}

/// The result of an absorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The tokens were taken: `after` is the bucket to store, with
    /// `tokens_left` whole tokens.
    Admitted { after: Bucket, tokens_left: u64 },
    /// Not enough tokens: nothing changes; `tokens_left` whole tokens are
    /// there.
    Denied { tokens_left: u64 },
}

/// Everything a gateway needs to answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Details {
    pub decision: Decision,
    /// Whole tokens left: after the call when admitted, now when denied.
    pub tokens_left: u64,
    /// Milliseconds to wait before the same call can be admitted: `Some(0)`
    /// when admitted, `None` when never (more than the capacity).
    pub retry_after_ms: Option<u64>,
    /// Milliseconds until the bucket is full again (after the call).
    pub reset_after_ms: u64,
}

/// A read-only view of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Whole tokens that can be taken now.
    pub tokens_left: u64,
    pub capacity: u64,
    /// Milliseconds until one more whole token (0 when full).
    pub next_token_ms: u64,
    /// Milliseconds until the bucket is full (0 when full).
    pub full_ms: u64,
}

impl Bucket {
    /// A bucket with no stored state at `now_ms`: full.
    pub fn full(limit: Limit, now_ms: u64) -> Bucket {
        Bucket {
            limit,
            now: limit.ms_to_ticks(now_ms),
            full_at: None,
        }
    }

    /// A bucket whose full-again tick (in ticks of `limit`) is known.
    pub(crate) fn from_ticks(limit: Limit, now: Ticks, full_at: Ticks) -> Bucket {
        Bucket {
            limit,
            now,
            full_at: Some(full_at),
        }
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// The same state seen at another instant.
    pub fn at(&self, now_ms: u64) -> Bucket {
        Bucket {
            now: self.limit.ms_to_ticks(now_ms),
            ..*self
        }
    }

    /// The full-again tick, if the bucket has a state.
    pub(crate) fn full_at(&self) -> Option<Ticks> {
        self.full_at
    }

    /// Ticks of refill missing from a full bucket (0 when full). Exceeds the
    /// burst only when the clock went backwards after the last write.
    fn deficit(&self) -> Ticks {
        match self.full_at {
            Some(full_at) if full_at > self.now => full_at - self.now,
            _ => 0,
        }
    }

    /// Whole tokens that can be taken now (`0..=capacity`).
    pub fn tokens_left(&self) -> u64 {
        // burst - deficit is the refill present; whole tokens are that over
        // the interval, rounded down. A deficit above the burst (clock gone
        // backwards) means no token at all, never a wrapped count.
        let present = self.limit.burst().saturating_sub(self.deficit());
        u64::try_from(div_floor(present, self.limit.interval())).unwrap_or(self.limit.capacity())
    }

    /// True when the bucket holds its whole capacity (nothing to store).
    pub fn is_full(&self) -> bool {
        self.deficit() == 0
    }

    /// Takes `tokens` if the bucket holds that many. `tokens` may be
    /// anything, zero excepted by the caller's validation: more than the
    /// capacity is simply denied.
    pub fn absorb(&self, tokens: u64) -> Decision {
        let tokens_left = self.tokens_left();
        if tokens > tokens_left {
            return Decision::Denied { tokens_left };
        }
        // tokens <= tokens_left <= capacity: the products are bounded by the
        // burst and cannot overflow.
        let deficit = self.deficit() + Ticks::from(tokens) * self.limit.interval();
        let after = Bucket::from_ticks(self.limit, self.now, self.now + deficit);
        Decision::Admitted {
            after,
            tokens_left: after.tokens_left(),
        }
    }

    /// Milliseconds until the bucket is full again, rounded up (0 when full).
    pub fn ms_until_full(&self) -> u64 {
        ceil_div_u64(self.deficit(), self.limit.ticks_per_ms())
    }

    /// Milliseconds until at least `tokens` whole tokens are there, rounded
    /// up: a caller that waits exactly that long (and finds the bucket
    /// untouched) is admitted. `None` when `tokens > capacity` (never).
    pub fn ms_until_available(&self, tokens: u64) -> Option<u64> {
        if tokens > self.limit.capacity() {
            return None;
        }
        // Admitted once deficit_then + tokens * interval <= burst.
        let allowed = self.limit.burst() - Ticks::from(tokens) * self.limit.interval();
        let wait = self.deficit().saturating_sub(allowed);
        Some(ceil_div_u64(wait, self.limit.ticks_per_ms()))
    }

    /// [`Bucket::absorb`] with the waits a gateway answers with.
    pub fn absorb_with_details(&self, tokens: u64) -> Details {
        let decision = self.absorb(tokens);
        match decision {
            Decision::Admitted { after, tokens_left } => Details {
                decision,
                tokens_left,
                retry_after_ms: Some(0),
                reset_after_ms: after.ms_until_full(),
            },
            Decision::Denied { tokens_left } => Details {
                decision,
                tokens_left,
                retry_after_ms: self.ms_until_available(tokens),
                reset_after_ms: self.ms_until_full(),
            },
        }
    }

    /// The bucket without changing it.
    pub fn inspect(&self) -> Inspection {
        let tokens_left = self.tokens_left();
        let next_token_ms = if tokens_left >= self.limit.capacity() {
            0
        } else {
            // tokens_left + 1 <= capacity: a wait exists.
            self.ms_until_available(tokens_left + 1).unwrap_or(0)
        };
        Inspection {
            tokens_left,
            capacity: self.limit.capacity(),
            next_token_ms,
            full_ms: self.ms_until_full(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::{MAX_CAPACITY, MAX_PERIOD_SECS};
    use crate::reference::{lim, Reference, Rng, Sim};

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
        let half = Bucket::from_ticks(limit, now, now + limit.burst() / 2);
        assert_eq!(half.absorb(6), Decision::Denied { tokens_left: 5 });
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
            let seen = b.state(100_000 - back);
            assert!(seen.tokens_left() <= 5, "back {back}: {seen:?}");
        }
        assert_eq!(b.call(70_000, 1), None);
        // Once the clock catches up, refill resumes from where it was.
        assert_eq!(b.call(100_000, 5), Some(0));
    }

    #[test]
    fn limits_never_overflow() {
        let limit = lim(MAX_CAPACITY, MAX_PERIOD_SECS);
        let now = limit.ms_to_ticks(u64::MAX);
        let empty = Bucket::from_ticks(limit, now, now + limit.burst());
        assert_eq!(empty.tokens_left(), 0);
        assert_eq!(empty.ms_until_full(), MAX_PERIOD_SECS * 1000);
        let full = Bucket::full(limit, u64::MAX);
        match full.absorb(MAX_CAPACITY) {
            Decision::Admitted { after, tokens_left } => {
                assert_eq!(tokens_left, 0);
                assert_eq!(after.full_at(), Some(now + limit.burst()));
            }
            other => panic!("{other:?}"),
        }
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
                assert_eq!(
                    sim.call(now, tokens),
                    reference.call(now, tokens),
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
            let mut now = rng.below(1 << 40);
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for _ in 0..300 {
                now += rng.below(period * 1000 / capacity + 5);
                let tokens = 1 + rng.below(capacity.min(4));
                if sim.call(now, tokens).is_some() {
                    admitted.push((now, tokens));
                }
            }
            crate::reference::assert_every_window_within_rate(&admitted, capacity, period);
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
            let mut sim = Sim::new(lim(capacity, period));
            let mut now = rng.below(1 << 40);
            let mut calls: Vec<(u64, u64)> = Vec::new();
            for _ in 0..300 {
                now += rng.below(period * 1000 / capacity + 3);
                let room = crate::reference::room_within_rate(&calls, now, capacity, period);
                if room == 0 {
                    continue;
                }
                let tokens = 1 + rng.below(room);
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
        let d = Bucket::full(limit, 1_000_000).absorb_with_details(4);
        assert_eq!(
            (d.tokens_left, d.retry_after_ms, d.reset_after_ms),
            (6, Some(0), 4_000)
        );
        let Decision::Admitted { after, .. } = d.decision else {
            panic!("admitted")
        };
        let d = after.absorb_with_details(8);
        assert_eq!(d.decision, Decision::Denied { tokens_left: 6 });
        assert_eq!(
            (d.tokens_left, d.retry_after_ms, d.reset_after_ms),
            (6, Some(2_000), 4_000)
        );
        assert_eq!(after.absorb_with_details(11).retry_after_ms, None);
    }

    #[test]
    fn inspect_agrees_with_what_absorb_would_do() {
        let mut rng = Rng::new(5);
        for _ in 0..3_000 {
            let limit = lim(1 + rng.below(500), 1 + rng.below(100));
            let now_ms = 1_000_000 + rng.below(1_000_000);
            let now = limit.ms_to_ticks(now_ms);
            let bucket = Bucket::from_ticks(limit, now, now + rng.below_u128(limit.burst() + 1));
            let view = bucket.inspect();
            // Exactly `tokens_left` tokens can be taken now, not one more.
            if view.tokens_left > 0 {
                assert!(matches!(
                    bucket.absorb(view.tokens_left),
                    Decision::Admitted { tokens_left: 0, .. }
                ));
            }
            assert!(matches!(
                bucket.absorb(view.tokens_left + 1),
                Decision::Denied { .. }
            ));
            // One more token exactly `next_token_ms` later, not a ms sooner.
            if view.tokens_left < view.capacity {
                let at = |ms| bucket.at(ms).tokens_left();
                assert_eq!(at(now_ms + view.next_token_ms), view.tokens_left + 1);
                assert_eq!(at(now_ms + view.next_token_ms - 1), view.tokens_left);
            } else {
                assert_eq!((view.next_token_ms, view.full_ms), (0, 0));
            }
        }
    }

    #[test]
    fn wait_times_are_exact_to_the_millisecond() {
        let mut rng = Rng::new(99);
        for _ in 0..2_000 {
            let capacity = 1 + rng.below(1_000);
            let limit = lim(capacity, 1 + rng.below(100));
            let now_ms = 1_000_000 + rng.below(1_000_000);
            let now = limit.ms_to_ticks(now_ms);
            let bucket = Bucket::from_ticks(limit, now, now + rng.below_u128(limit.burst() + 1));
            let tokens = 1 + rng.below(capacity);
            let wait = bucket.ms_until_available(tokens).expect("<= capacity");
            let at = |ms: u64| bucket.at(ms).absorb(tokens);
            assert!(matches!(at(now_ms + wait), Decision::Admitted { .. }));
            if wait > 0 {
                assert!(matches!(at(now_ms + wait - 1), Decision::Denied { .. }));
            }
            let full = bucket.ms_until_full();
            assert!(bucket.at(now_ms + full).is_full());
            if full > 0 {
                assert!(!bucket.at(now_ms + full - 1).is_full());
            }
        }
    }
}
