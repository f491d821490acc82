//! `SHIELD.absorb <key> <capacity> <period> [<tokens>] [WITHDETAILS]`.

use crate::args::parse_bucket;
use crate::bucket::{absorb, absorb_with_details, Decision};
use crate::error::ShieldError;
use crate::keyspace::{Access, BucketKey};
use crate::reply::{int, ms_or_never, Reply};
use crate::server_api::{bytes, now_ms, Ctx, RStr};
use crate::stats;
use crate::stored_state;

const WITHDETAILS: &[u8] = b"WITHDETAILS";

/// Integer reply (tokens left, -1 when denied), or with `WITHDETAILS`
/// `[admitted 1|0, tokens left, retry-after ms, reset-after ms]`.
pub fn run(ctx: Ctx, argv: &[RStr]) -> Result<Reply, ShieldError> {
    let (key_name, capacity, period, rest) = match argv {
        [_, key, capacity, period, rest @ ..] if rest.len() <= 2 => {
            (*key, *capacity, *period, rest)
        }
        _ => return Ok(Reply::WrongArity),
    };
    let is_keyword = |s: &RStr| bytes(*s).eq_ignore_ascii_case(WITHDETAILS);
    let (tokens, with_details) = match rest {
        [] => (None, false),
        [last] if is_keyword(last) => (None, true),
        [tokens] => (Some(bytes(*tokens)), false),
        [tokens, last] if is_keyword(last) => (Some(bytes(*tokens)), true),
        _ => {
            return Err(ShieldError::Syntax(
                "the only option after tokens is WITHDETAILS",
            ))
        }
    };
    let args = parse_bucket(bytes(capacity), bytes(period), tokens)?;
    let limit = args.limit;
    let now = limit.ms_to_ticks(now_ms()?);
    let mut key = BucketKey::open(ctx, key_name, Access::Write)?;
    let full_at = key.full_at(&limit, now)?;
    if !with_details {
        // The plain form: no wait times to compute.
        return Ok(Reply::Integer(
            match absorb(&limit, full_at, now, args.tokens) {
                Decision::Admitted { full_at, remaining } => {
                    key.store(&stored_state::encode(&limit, full_at)?)?;
                    count_admitted(args.tokens);
                    int(remaining)
                }
                Decision::Denied { .. } => {
                    key.store_if_legacy(&limit)?;
                    stats::count(&stats::DENIED, 1);
                    -1
                }
            },
        ));
    }
    let details = absorb_with_details(&limit, full_at, now, args.tokens);
    let admitted = match details.decision {
        Decision::Admitted { full_at, .. } => {
            key.store(&stored_state::encode(&limit, full_at)?)?;
            count_admitted(args.tokens);
            true
        }
        Decision::Denied { .. } => {
            key.store_if_legacy(&limit)?;
            stats::count(&stats::DENIED, 1);
            false
        }
    };
    Ok(Reply::Integers([
        i64::from(admitted),
        int(details.remaining),
        ms_or_never(details.retry_after_ms),
        int(details.reset_after_ms),
    ]))
}

fn count_admitted(tokens: u64) {
    stats::count(&stats::ADMITTED, 1);
    stats::count(&stats::TOKENS_ABSORBED, tokens);
}
