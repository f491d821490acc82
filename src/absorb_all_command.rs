//! `SHIELD.absorball <key> <capacity> <period> <tokens> [<key> <capacity> <period> <tokens> ...]`:
//! takes the tokens from every bucket if each one holds enough, else from
//! none.

use crate::args::parse_bucket;
use crate::bucket::{absorb_all, Decision, Request};
use crate::error::ShieldError;
use crate::keyspace::{Access, BucketKey};
use crate::reply::{int, ms_or_never, Reply};
use crate::server_api::{bytes, now_ms, Ctx, RStr};
use crate::stats;
use crate::stored_state;

/// Most buckets one call may name.
pub const MAX_BUCKETS: usize = 32;

/// `[admitted 1|0, retry-after ms, [tokens left per bucket], [short keys]]`.
pub fn run(ctx: Ctx, argv: &[RStr]) -> Result<Reply, ShieldError> {
    let groups = argv.get(1..).unwrap_or(&[]);
    if groups.is_empty() || groups.len() % 4 != 0 {
        return Ok(Reply::WrongArity);
    }
    let count = groups.len() / 4;
    if count > MAX_BUCKETS {
        return Err(ShieldError::TooManyBuckets(MAX_BUCKETS));
    }
    // Validate every argument before touching any key.
    let mut parsed = Vec::with_capacity(count);
    for group in groups.chunks_exact(4) {
        let [key, capacity, period, tokens] = group else {
            return Ok(Reply::WrongArity);
        };
        let args = parse_bucket(bytes(*capacity), bytes(*period), Some(bytes(*tokens)))?;
        if parsed.iter().any(|(k, _)| bytes(*k) == bytes(*key)) {
            return Err(ShieldError::DuplicateKey);
        }
        parsed.push((*key, args));
    }
    let now_ms = now_ms()?;
    let mut keys = Vec::with_capacity(count);
    let mut requests = Vec::with_capacity(count);
    for &(name, args) in &parsed {
        let mut key = BucketKey::open(ctx, name, Access::Write)?;
        let full_at = key.full_at(&args.limit, args.limit.ms_to_ticks(now_ms))?;
        requests.push(Request {
            limit: args.limit,
            full_at,
            tokens: args.tokens,
        });
        keys.push(key);
    }
    let outcome = absorb_all(&requests, now_ms);
    let mut short_keys = Vec::new();
    for ((key, request), decision) in keys.iter_mut().zip(&requests).zip(&outcome.each) {
        match *decision {
            Decision::Admitted { full_at, .. } if outcome.admitted => {
                key.store(&stored_state::encode(&request.limit, full_at)?)?;
                stats::count(&stats::TOKENS_ABSORBED, request.tokens);
            }
            Decision::Admitted { .. } => key.store_if_legacy(&request.limit)?,
            Decision::Denied { .. } => {
                key.store_if_legacy(&request.limit)?;
                short_keys.push(key.name());
            }
        }
    }
    stats::count(
        if outcome.admitted {
            &stats::ADMITTED
        } else {
            &stats::DENIED
        },
        1,
    );
    Ok(Reply::AbsorbAll {
        admitted: outcome.admitted,
        retry_after_ms: ms_or_never(outcome.retry_after_ms),
        remaining: outcome.left.iter().map(|&n| int(n)).collect(),
        short_keys,
    })
}
