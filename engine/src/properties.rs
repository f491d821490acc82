//! Property tests with shrinking (proptest): random limits and call
//! sequences, checked against the exact rational reference model and the
//! rate bound. A failure is shrunk to the smallest sequence that still fails.
//! The seeded cases in the other test modules stay as they were.

use proptest::prelude::*;

use crate::bucket::{Bucket, Decision};
use crate::limit::{MAX_CAPACITY, MAX_PERIOD_SECS};
use crate::reference::{
    assert_capacity_change_is_conservative, assert_every_window_within_rate, lim, room_within_rate,
    Reference, Sim,
};

/// Capacities and periods across their whole ranges, small ones favoured.
fn capacity() -> impl Strategy<Value = u64> {
    prop_oneof![1..=10u64, 1..=1_000u64, 1..=MAX_CAPACITY]
}

fn period() -> impl Strategy<Value = u64> {
    prop_oneof![1..=5u64, 1..=3_600u64, 1..=MAX_PERIOD_SECS]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any limit in range, any state, any call: nothing overflows or panics,
    /// and what the engine stores it reads back.
    #[test]
    fn any_limit_round_trips(
        capacity in capacity(),
        period in period(),
        now_ms in 0..=4_000_000_000_000u64,
        per_mille in 1..=1_000u64,
    ) {
        let limit = lim(capacity, period);
        let tokens = tokens_for(capacity, per_mille).min(capacity);
        let Decision::Admitted { after, tokens_left } = Bucket::full(limit, now_ms).absorb(tokens) else {
            return Err(TestCaseError::fail("a full bucket admits up to its capacity"));
        };
        prop_assert_eq!(tokens_left, capacity - tokens);
        let enc = after.encode().expect("encodes");
        let read = crate::stored::decode(limit, enc.value().expect("value"), Some(enc.expire_at_ms() as i64), now_ms)
            .expect("decodes");
        prop_assert_eq!(read.bucket, after);
        let _ = read.bucket.absorb_with_details(u64::MAX);
        let _ = read.bucket.inspect();
    }
}

/// A call sequence: (ms since the previous call, tokens), tokens as a
/// fraction of the capacity so that shrinking keeps them meaningful.
fn calls() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 0..20u64, 0..100_000u64],
            1..=1_000u64,
        ),
        1..80,
    )
}

/// `units / 10^decimals` written as a decimal.
fn format_decimal(units: u64, decimals: u32) -> String {
    let scale = 10u64.pow(decimals);
    if decimals == 0 {
        units.to_string()
    } else {
        format!(
            "{}.{:0width$}",
            units / scale,
            units % scale,
            width = decimals as usize
        )
    }
}

fn tokens_for(capacity: u64, per_mille: u64) -> u64 {
    // 1..=capacity+1 (one above capacity is always denied).
    1 + u64::try_from(u128::from(capacity) * u128::from(per_mille) / 1000).unwrap_or(capacity)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn agrees_with_the_reference_model(
        capacity in capacity(),
        period in 1..=100_000u64,
        start in 0..2_000_000_000_000u64,
        calls in calls(),
    ) {
        let mut sim = Sim::new(lim(capacity, period));
        let mut reference = Reference::new(capacity, period);
        let mut now = start;
        for (gap, per_mille) in calls {
            now += gap;
            let tokens = tokens_for(capacity, per_mille);
            prop_assert_eq!(sim.call(now, tokens), reference.call(now, tokens), "at {} taking {}", now, tokens);
        }
    }

    /// Any rate, not only the capacity per period: `tokens` per a decimal
    /// number of seconds (CL.THROTTLE, GCRA).
    #[test]
    fn any_rate_agrees_with_the_reference_model(
        capacity in 1..=1_000u64,
        tokens in prop_oneof![1..=10u64, 1..=100_000u64],
        units in 1..=100_000u64,
        decimals in 0..=6u32,
        start in 0..2_000_000_000_000u64,
        calls in calls(),
    ) {
        let per = crate::limit::Seconds::parse(
            format_decimal(units, decimals).as_bytes()
        ).expect("a decimal");
        let limit = crate::limit::Limit::with_rate(capacity, crate::limit::Rate { tokens, per })
            .expect("in range");
        let mut sim = Sim::new(limit);
        let mut reference = Reference::with_rate(capacity, tokens, units, decimals);
        let mut now = start;
        for (gap, per_mille) in calls {
            now += gap;
            let take = tokens_for(capacity, per_mille);
            prop_assert_eq!(sim.call(now, take), reference.call(now, take), "at {} taking {}", now, take);
        }
    }

    #[test]
    fn admitted_never_exceeds_capacity_plus_rate_times_t(
        capacity in 1..=60u64,
        period in 1..=30u64,
        calls in calls(),
    ) {
        let mut sim = Sim::new(lim(capacity, period));
        let mut now = 1_000_000;
        let mut admitted = Vec::new();
        for (gap, per_mille) in calls {
            now += gap % (period * 2000 / capacity + 10);
            let tokens = tokens_for(capacity, per_mille).min(capacity);
            if sim.call(now, tokens).is_some() {
                admitted.push((now, tokens));
            }
        }
        assert_every_window_within_rate(&admitted, capacity, period);
    }

    #[test]
    fn a_client_within_its_rate_is_never_denied(
        capacity in 1..=100u64,
        period in 1..=60u64,
        calls in calls(),
    ) {
        let mut sim = Sim::new(lim(capacity, period));
        let mut now = 1_000_000;
        let mut taken = Vec::new();
        for (gap, per_mille) in calls {
            now += gap % (period * 1000 / capacity + 3);
            let room = room_within_rate(&taken, now, capacity, period);
            if room == 0 {
                continue;
            }
            let tokens = 1 + (room - 1) * per_mille / 1000;
            prop_assert!(sim.call(now, tokens).is_some(), "denied {} tokens at {} within the rate", tokens, now);
            taken.push((now, tokens));
        }
    }

    #[test]
    fn waits_are_exact_to_the_millisecond(
        capacity in 1..=1_000u64,
        period in 1..=100u64,
        drained_per_mille in 0..=1_000u64,
        per_mille in 1..=1_000u64,
    ) {
        let limit = lim(capacity, period);
        let now_ms = 1_000_000;
        let drained = capacity * drained_per_mille / 1000;
        let bucket = match Bucket::full(limit, now_ms).absorb(drained.max(1)) {
            Decision::Admitted { after, .. } => after,
            Decision::Denied { .. } => Bucket::full(limit, now_ms),
        };
        let tokens = tokens_for(capacity, per_mille).min(capacity);
        let wait = bucket.ms_until_available(tokens).expect("within capacity");
        let admitted = |ms| matches!(bucket.at(ms).absorb(tokens), Decision::Admitted { .. });
        prop_assert!(admitted(now_ms + wait), "not admitted after waiting {} ms", wait);
        if wait > 0 {
            prop_assert!(!admitted(now_ms + wait - 1), "admitted 1 ms before {} ms", wait);
        }
    }

    #[test]
    fn a_capacity_change_is_conservative(
        old_capacity in capacity(),
        new_capacity in capacity(),
        // (The check's own products stay below 2^128 up to 10^5 s.)
        period in 1..=100_000u64,
        base_ms in 1_600_000_000_000..1_800_000_000_000u64,
        fraction in 1..=1_000_000u64,
    ) {
        let old = lim(old_capacity, period);
        let now = old.ms_to_ticks(base_ms);
        let full_at = now + 1 + old.burst() * u128::from(fraction) / 1_000_000;
        assert_capacity_change_is_conservative(old, lim(new_capacity, period), base_ms, full_at);
    }
}
