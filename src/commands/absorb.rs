//! `SHIELD.absorb <key> <capacity> <period> [<tokens>] [WITHDETAILS]`.

use shield_engine::{parse_bucket, Decision, ShieldError};

use crate::ffi::{now_ms, Arg, CommandCtx};
use crate::keyspace::{Access, BucketKey};
use crate::reply::{int, ms_or_never, Reply};
use crate::stats;

const WITHDETAILS: &[u8] = b"WITHDETAILS";

/// Integer reply (tokens left, -1 when denied), or with `WITHDETAILS`
/// `[admitted 1|0, tokens left, retry-after ms, reset-after ms]`.
pub fn run<'a>(ctx: CommandCtx<'a>, argv: &[Arg<'a>]) -> Result<Reply<'a>, ShieldError> {
    let (key_name, capacity, period, rest) = match argv {
        [_, key, capacity, period, rest @ ..] if rest.len() <= 2 => {
            (*key, *capacity, *period, rest)
        }
        _ => return Ok(Reply::WrongArity),
    };
    let is_keyword = |s: &Arg<'_>| s.bytes().eq_ignore_ascii_case(WITHDETAILS);
    let (tokens, with_details) = match rest {
        [] => (None, false),
        [last] if is_keyword(last) => (None, true),
        [tokens] => (Some(tokens.bytes()), false),
        [tokens, last] if is_keyword(last) => (Some(tokens.bytes()), true),
        _ => {
            return Err(ShieldError::Syntax(
                "the only option after tokens is WITHDETAILS",
            ))
        }
    };
    let args = parse_bucket(capacity.bytes(), period.bytes(), tokens)?;
    let mut key = BucketKey::open(ctx, key_name, Access::Write)?;
    let bucket = key.read(args.limit, now_ms()?)?;
    if !with_details {
        // The plain form: no wait times to compute.
        return Ok(Reply::Integer(match bucket.absorb(args.tokens) {
            Decision::Admitted { after, tokens_left } => {
                key.store(&after.encode()?)?;
                count_admitted(args.tokens);
                int(tokens_left)
            }
            Decision::Denied { .. } => {
                key.store_if_legacy()?;
                stats::count(&stats::DENIED, 1);
                -1
            }
        }));
    }
    let details = bucket.absorb_with_details(args.tokens);
    let admitted = match details.decision {
        Decision::Admitted { after, .. } => {
            key.store(&after.encode()?)?;
            count_admitted(args.tokens);
            true
        }
        Decision::Denied { .. } => {
            key.store_if_legacy()?;
            stats::count(&stats::DENIED, 1);
            false
        }
    };
    Ok(Reply::Integers([
        i64::from(admitted),
        int(details.tokens_left),
        ms_or_never(details.retry_after_ms),
        int(details.reset_after_ms),
    ]))
}

fn count_admitted(tokens: u64) {
    stats::count(&stats::ADMITTED, 1);
    stats::count(&stats::TOKENS_ABSORBED, tokens);
}
