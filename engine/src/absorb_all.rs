//! All or nothing over several buckets: each is charged only if every one
//! holds enough.

use crate::bucket::{Bucket, Decision};

/// One bucket of an all-or-nothing absorb, and the tokens to take from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub bucket: Bucket,
    pub tokens: u64,
}

/// The outcome of [`absorb_all`], bucket by bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsorbAllOutcome {
    /// True when every bucket had enough: then every one is charged.
    pub admitted: bool,
    /// Per bucket, in order: the decision it would take on its own (its
    /// `after` is what to store when `admitted`).
    pub each: Vec<Decision>,
    /// Per bucket, in order: whole tokens left after the call when admitted,
    /// now (nothing charged) when denied.
    pub tokens_left: Vec<u64>,
    /// When denied: milliseconds until every bucket would admit its tokens
    /// (the longest of their waits); `None` when some bucket never can
    /// (tokens above its capacity). `Some(0)` when admitted.
    pub retry_after_ms: Option<u64>,
}

/// Takes the tokens from every bucket if each holds enough, else from none.
///
/// ```
/// use shield_engine::{absorb_all, Bucket, Charge, Limit};
/// let per_second = Limit::new(5, 1).ok_or("limit")?;
/// let per_hour = Limit::new(100, 3_600).ok_or("limit")?;
/// let now_ms = 1_700_000_000_000;
/// let outcome = absorb_all(&[
///     Charge { bucket: Bucket::full(per_second, now_ms), tokens: 1 },
///     Charge { bucket: Bucket::full(per_hour, now_ms), tokens: 1 },
/// ]);
/// assert!(outcome.admitted);
/// assert_eq!(outcome.tokens_left, [4, 99]);
/// # Ok::<(), &str>(())
/// ```
pub fn absorb_all(charges: &[Charge]) -> AbsorbAllOutcome {
    let each: Vec<Decision> = charges.iter().map(|c| c.bucket.absorb(c.tokens)).collect();
    let admitted = each.iter().all(|d| matches!(d, Decision::Admitted { .. }));
    let tokens_left = charges
        .iter()
        .zip(&each)
        .map(|(c, d)| match *d {
            Decision::Admitted { tokens_left, .. } if admitted => tokens_left,
            Decision::Admitted { .. } => c.bucket.tokens_left(),
            Decision::Denied { tokens_left } => tokens_left,
        })
        .collect();
    let retry_after_ms = if admitted {
        Some(0)
    } else {
        charges.iter().try_fold(0u64, |longest, c| {
            c.bucket
                .ms_until_available(c.tokens)
                .map(|wait| longest.max(wait))
        })
    };
    AbsorbAllOutcome {
        admitted,
        each,
        tokens_left,
        retry_after_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::lim;

    #[test]
    fn charges_all_or_none() {
        let a = lim(10, 10);
        let b = lim(3, 60);
        let now_ms = 5_000_000;
        let charge = |bucket, tokens| Charge { bucket, tokens };
        let all = absorb_all(&[
            charge(Bucket::full(a, now_ms), 2),
            charge(Bucket::full(b, now_ms), 3),
        ]);
        assert!(all.admitted);
        assert_eq!(all.retry_after_ms, Some(0));
        assert_eq!(all.tokens_left, [8, 0]);
        // b is drained now: the next call is denied for both, and says when
        // both would admit it: b refills a token every 20 s.
        let after = |d: &Decision| match *d {
            Decision::Admitted { after, .. } => after,
            Decision::Denied { .. } => panic!("admitted"),
        };
        let (a_after, b_after) = (after(&all.each[0]), after(&all.each[1]));
        let next = |ms| [charge(a_after.at(ms), 1), charge(b_after.at(ms), 1)];
        let denied = absorb_all(&next(now_ms));
        assert!(!denied.admitted);
        // Nothing charged: a still holds its 8 tokens, b none.
        assert_eq!(denied.tokens_left, [8, 0]);
        assert!(matches!(denied.each[0], Decision::Admitted { .. }));
        assert_eq!(denied.each[1], Decision::Denied { tokens_left: 0 });
        assert_eq!(denied.retry_after_ms, Some(20_000));
        assert!(absorb_all(&next(now_ms + 20_000)).admitted);
        assert!(!absorb_all(&next(now_ms + 19_999)).admitted);
        // A bucket asked for more than its capacity can never admit.
        let never = absorb_all(&[
            charge(Bucket::full(a, now_ms), 1),
            charge(Bucket::full(b, now_ms), 4),
        ]);
        assert_eq!(never.retry_after_ms, None);
    }
}
