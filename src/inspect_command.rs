//! `SHIELD.inspect <key> <capacity> <period>`: a bucket's state, read-only.

use crate::args::parse_bucket;
use crate::bucket::inspect;
use crate::error::ShieldError;
use crate::keyspace::{Access, BucketKey};
use crate::reply::{int, Reply};
use crate::server_api::{bytes, now_ms, Ctx, RStr};

/// `[tokens available, capacity, ms until the next token, ms until full]`.
pub fn run(ctx: Ctx, argv: &[RStr]) -> Result<Reply, ShieldError> {
    let [_, key_name, capacity, period] = argv else {
        return Ok(Reply::WrongArity);
    };
    let limit = parse_bucket(bytes(*capacity), bytes(*period), None)?.limit;
    let now = limit.ms_to_ticks(now_ms()?);
    let mut key = BucketKey::open(ctx, *key_name, Access::Read)?;
    let view = inspect(&limit, key.full_at(&limit, now)?, now);
    Ok(Reply::Integers([
        int(view.available),
        int(view.capacity),
        int(view.next_token_ms),
        int(view.full_ms),
    ]))
}
