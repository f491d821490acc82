//! `SHIELD.absorball <key> <capacity> <period> <tokens> [<key> <capacity> <period> <tokens> ...]`:
//! takes the tokens from every bucket if each one holds enough, else from
//! none.

use shield_engine::{absorb_all, parse_bucket, Charge, Decision, ShieldError};

use crate::ffi::{now_ms, Arg, CommandCtx};
use crate::keyspace::{Access, BucketKey};
use crate::reply::{int, ms_or_never, Reply};
use crate::stats;

/// Most buckets one call may name.
pub const MAX_BUCKETS: usize = 32;

/// `[admitted 1|0, retry-after ms, [tokens left per bucket], [short keys]]`.
pub fn run<'a>(ctx: CommandCtx<'a>, argv: &[Arg<'a>]) -> Result<Reply<'a>, ShieldError> {
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
        let args = parse_bucket(capacity.bytes(), period.bytes(), Some(tokens.bytes()))?;
        if parsed
            .iter()
            .any(|(k, _): &(Arg<'_>, _)| k.bytes() == key.bytes())
        {
            return Err(ShieldError::DuplicateKey);
        }
        parsed.push((*key, args));
    }
    let now_ms = now_ms()?;
    let mut keys = Vec::with_capacity(count);
    let mut charges = Vec::with_capacity(count);
    for &(name, args) in &parsed {
        let mut key = BucketKey::open(ctx, name, Access::Write)?;
        charges.push(Charge {
            bucket: key.read(args.limit, now_ms)?,
            tokens: args.tokens,
        });
        keys.push(key);
    }
    let outcome = absorb_all(&charges);
    let mut short_keys = Vec::new();
    for ((key, charge), decision) in keys.iter_mut().zip(&charges).zip(&outcome.each) {
        match *decision {
            Decision::Admitted { after, .. } if outcome.admitted => {
                key.store(&after.encode()?)?;
                stats::count(&stats::TOKENS_ABSORBED, charge.tokens);
            }
            Decision::Admitted { .. } => key.store_if_legacy()?,
            Decision::Denied { .. } => {
                key.store_if_legacy()?;
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
        tokens_left: outcome.tokens_left.iter().map(|&n| int(n)).collect(),
        short_keys,
    })
}
