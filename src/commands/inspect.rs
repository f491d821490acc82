//! `SHIELD.inspect <key> <capacity> <period>`: a bucket's state, read-only.

use shield_engine::{parse_bucket, ShieldError};

use crate::ffi::{now_ms, Arg, CommandCtx};
use crate::keyspace::{Access, BucketKey};
use crate::reply::{int, Reply};

/// `[tokens left, capacity, ms until the next token, ms until full]`.
pub fn run<'a>(ctx: CommandCtx<'a>, argv: &[Arg<'a>]) -> Result<Reply<'a>, ShieldError> {
    let [_, key_name, capacity, period] = argv else {
        return Ok(Reply::WrongArity);
    };
    let limit = parse_bucket(capacity.bytes(), period.bytes(), None)?.limit;
    let mut key = BucketKey::open(ctx, *key_name, Access::Read)?;
    let view = key.read(limit, now_ms()?)?.inspect();
    Ok(Reply::Integers([
        int(view.tokens_left),
        int(view.capacity),
        int(view.next_token_ms),
        int(view.full_ms),
    ]))
}
