//! Turning a command's result into the server's reply.

use std::os::raw::{c_int, c_long, c_longlong};

use redis_module::raw;

use crate::server_api::{Ctx, RStr};

/// What a command answers when it does not fail.
pub enum Reply {
    Integer(i64),
    /// A flat array of integers (`WITHDETAILS`, `SHIELD.inspect`).
    Integers([i64; 4]),
    /// `SHIELD.absorball`: admitted, retry-after, tokens left per bucket, the
    /// keys of the buckets that were short.
    AbsorbAll {
        admitted: bool,
        retry_after_ms: i64,
        remaining: Vec<i64>,
        short_keys: Vec<RStr>,
    },
    /// The server's standard wrong-number-of-arguments error.
    WrongArity,
}

pub fn send(ctx: Ctx, reply: &Reply) -> c_int {
    // SAFETY: ctx is the running command's context; the key strings are the
    // command's own arguments.
    unsafe {
        let (Some(int), Some(array), Some(string), Some(arity)) = (
            raw::RedisModule_ReplyWithLongLong,
            raw::RedisModule_ReplyWithArray,
            raw::RedisModule_ReplyWithString,
            raw::RedisModule_WrongArity,
        ) else {
            return raw::REDISMODULE_ERR as c_int;
        };
        let len = |n: usize| c_long::try_from(n).unwrap_or(0);
        match reply {
            Reply::Integer(n) => int(ctx, *n as c_longlong),
            Reply::Integers(values) => {
                array(ctx, len(values.len()));
                for &v in values {
                    int(ctx, v as c_longlong);
                }
                raw::REDISMODULE_OK as c_int
            }
            Reply::AbsorbAll {
                admitted,
                retry_after_ms,
                remaining,
                short_keys,
            } => {
                array(ctx, 4);
                int(ctx, c_longlong::from(*admitted));
                int(ctx, *retry_after_ms as c_longlong);
                array(ctx, len(remaining.len()));
                for &r in remaining {
                    int(ctx, r as c_longlong);
                }
                array(ctx, len(short_keys.len()));
                for &k in short_keys {
                    string(ctx, k);
                }
                raw::REDISMODULE_OK as c_int
            }
            Reply::WrongArity => arity(ctx),
        }
    }
}

/// A count or duration as a reply integer (saturating, never wrapping).
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `Some(ms)` as the integer, `None` (never) as -1.
pub fn ms_or_never(ms: Option<u64>) -> i64 {
    ms.map_or(-1, int)
}
