//! `SHIELD.absorb <key> <capacity> <period> [<tokens>]`.

use crate::args::parse_bucket;
use crate::bucket::{absorb, Decision};
use crate::error::ShieldError;
use crate::keyspace::BucketKey;
use crate::server_api::{bytes, now_ms, Ctx, RStr};
use crate::stats;
use crate::stored_state;

/// The reply of an absorb: whole tokens left, or -1 when denied.
pub fn run(ctx: Ctx, argv: &[RStr]) -> Result<i64, ShieldError> {
    let (Some(&key_name), Some(&capacity), Some(&period)) = (argv.get(1), argv.get(2), argv.get(3))
    else {
        return Err(ShieldError::Internal("arity not checked".into()));
    };
    let args = parse_bucket(
        bytes(capacity),
        bytes(period),
        argv.get(4).map(|&t| bytes(t)),
    )?;
    let limit = args.limit;
    let now = limit.ms_to_ticks(now_ms()?);
    let mut key = BucketKey::open_writable(ctx, key_name)?;
    let full_at = key.full_at(&limit, now)?;
    match absorb(&limit, full_at, now, args.tokens) {
        Decision::Admitted { full_at, remaining } => {
            key.store(&stored_state::encode(&limit, full_at)?)?;
            stats::count(&stats::ADMITTED, 1);
            stats::count(&stats::TOKENS_ABSORBED, args.tokens);
            Ok(i64::try_from(remaining).unwrap_or(i64::MAX))
        }
        Decision::Denied { .. } => {
            stats::count(&stats::DENIED, 1);
            Ok(-1)
        }
    }
}
