//! `GCRA <key> <max_burst> <tokens_per_period> <period> [TOKENS <count>]`:
//! Redis's own design (held out of 8.8), for servers without it, from the
//! exact engine; stored like a `SHIELD.absorb` bucket.

use shield_engine::{gcra, parse_gcra, ShieldError};

use crate::ffi::{now_ms, Arg, CommandCtx};
use crate::keyspace::{Access, BucketKey};
use crate::reply::Reply;

/// `[limited 0|1, max_burst + 1, available, retry_after s (-1: none),
/// full_burst_after s]`.
pub fn run<'a>(ctx: CommandCtx<'a>, argv: &[Arg<'a>]) -> Result<Reply<'a>, ShieldError> {
    let [_, key_name, rest @ ..] = argv else {
        return Ok(Reply::WrongArity);
    };
    if rest.len() > 5 {
        return Ok(Reply::WrongArity);
    }
    let mut bytes: [&[u8]; 5] = [&[]; 5];
    for (slot, arg) in bytes.iter_mut().zip(rest) {
        *slot = arg.bytes();
    }
    let args = match parse_gcra(bytes.get(..rest.len()).unwrap_or(&[])) {
        Err(ShieldError::WrongArity) => return Ok(Reply::WrongArity),
        other => other?,
    };
    let mut key = BucketKey::open(ctx, *key_name, Access::Write)?;
    let bucket = key.read(args.limit, now_ms()?)?;
    let (after, reply) = gcra(&bucket, args.tokens);
    match after {
        Some(after) => key.store(&after.encode()?)?,
        None => key.store_if_legacy()?,
    }
    Ok(super::gcra_reply(&reply, after.map(|_| args.tokens)))
}
