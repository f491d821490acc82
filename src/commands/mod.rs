//! The SHIELD commands: each reads its arguments, reads its key(s), asks the
//! engine, writes and replicates what the engine decided.

pub mod absorb;
pub mod absorb_all;
pub mod cl_throttle;
pub mod gcra;
pub mod inspect;

use shield_engine::GcraReply;

use crate::reply::{int, Reply};
use crate::stats;

/// The end of a GCRA-style call (`CL.THROTTLE`, `GCRA`): counts it, and
/// replies with the five integers. `taken`: the tokens the call took (its
/// state was written), `None` when it took none.
fn gcra_reply<'a>(reply: &GcraReply, taken: Option<u64>) -> Reply<'a> {
    match taken {
        Some(tokens) => {
            stats::count(&stats::ADMITTED, 1);
            stats::count(&stats::TOKENS_ABSORBED, tokens);
        }
        None if reply.limited => stats::count(&stats::DENIED, 1),
        None => {}
    }
    Reply::Five([
        i64::from(reply.limited),
        int(reply.limit),
        int(reply.tokens_left),
        reply.retry_after_s,
        int(reply.full_after_s),
    ])
}
