//! Turning a command's result into the server's reply.

use crate::ffi::{Arg, CommandCtx, Status};

/// What a command answers when it does not fail.
pub enum Reply<'a> {
    Integer(i64),
    /// A flat array of integers (`WITHDETAILS`, `SHIELD.inspect`).
    Integers([i64; 4]),
    /// The five integers of `CL.THROTTLE` and `GCRA`.
    Five([i64; 5]),
    /// `SHIELD.absorball`: admitted, retry-after, tokens left per bucket, the
    /// keys of the buckets that were short.
    AbsorbAll {
        admitted: bool,
        retry_after_ms: i64,
        tokens_left: Vec<i64>,
        short_keys: Vec<Arg<'a>>,
    },
    /// The server's standard wrong-number-of-arguments error.
    WrongArity,
}

impl<'a> Reply<'a> {
    pub fn send(&self, ctx: CommandCtx<'a>) -> Status {
        match self {
            Reply::Integer(n) => ctx.reply_integer(*n),
            Reply::Integers(values) => send_integers(ctx, values),
            Reply::Five(values) => send_integers(ctx, values),
            Reply::AbsorbAll {
                admitted,
                retry_after_ms,
                tokens_left,
                short_keys,
            } => {
                ctx.reply_array(4);
                ctx.reply_integer(i64::from(*admitted));
                ctx.reply_integer(*retry_after_ms);
                ctx.reply_array(tokens_left.len());
                for &n in tokens_left {
                    ctx.reply_integer(n);
                }
                ctx.reply_array(short_keys.len());
                for &k in short_keys {
                    ctx.reply_arg(k);
                }
                Status::OK
            }
            Reply::WrongArity => ctx.reply_wrong_arity(),
        }
    }
}

fn send_integers(ctx: CommandCtx<'_>, values: &[i64]) -> Status {
    ctx.reply_array(values.len());
    for &v in values {
        ctx.reply_integer(v);
    }
    Status::OK
}

/// A count or duration as a reply integer (saturating, never wrapping).
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `Some(ms)` as the integer, `None` (never) as -1.
pub fn ms_or_never(ms: Option<u64>) -> i64 {
    ms.map_or(-1, int)
}
