//! `CL.THROTTLE <key> <max_burst> <count> <period> [<quantity>]`: redis-cell's
//! command, on redis-cell's keys, from the exact engine.

use shield_engine::{parse_throttle, throttle, ShieldError};

use crate::ffi::{now_ms, Arg, CommandCtx};
use crate::keyspace::{Access, BucketKey};
use crate::reply::Reply;

/// `[limited 0|1, max_burst + 1, remaining, retry_after s (-1: none),
/// reset_after s]`. Quantity 0 is a peek: nothing is written.
pub fn run<'a>(ctx: CommandCtx<'a>, argv: &[Arg<'a>]) -> Result<Reply<'a>, ShieldError> {
    let (key_name, max_burst, count, period, quantity) = match argv {
        [_, key, burst, count, period] => (*key, *burst, *count, *period, None),
        [_, key, burst, count, period, quantity] => {
            (*key, *burst, *count, *period, Some(quantity.bytes()))
        }
        _ => return Ok(Reply::WrongArity),
    };
    let args = parse_throttle(max_burst.bytes(), count.bytes(), period.bytes(), quantity)?;
    let mut key = BucketKey::open(ctx, key_name, Access::Write)?;
    let bucket = key.read_cell(args.limit, now_ms()?)?;
    let (after, reply) = throttle(&bucket, args.quantity);
    if let Some(after) = after {
        key.store_cell(&mut after.encode_cell()?)?;
    }
    Ok(super::gcra_reply(&reply, after.map(|_| args.quantity)))
}
