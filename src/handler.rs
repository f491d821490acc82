//! The handler boundary: every SHIELD command runs through [`guarded`],
//! which counts the call, runs the command under the panic guard, and sends
//! its reply or its error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use shield_engine::ShieldError;

use crate::ffi::{Arg, CommandCtx, Status};
use crate::reply::Reply;
use crate::stats;

/// A command's body: its reply, or the error to answer.
pub type Body = for<'a> fn(CommandCtx<'a>, &[Arg<'a>]) -> Result<Reply<'a>, ShieldError>;

/// Runs a command body under the panic guard and sends its reply. A panic
/// becomes an error reply: the server keeps running.
#[inline]
pub fn guarded<'a>(ctx: CommandCtx<'a>, args: &[Arg<'a>], body: Body) -> Status {
    stats::count(&stats::CALLS, 1);
    let result = run_guarded(|| body(ctx, args));
    if matches!(result, Err(ShieldError::Panic(_))) {
        stats::count(&stats::PANICS, 1);
    }
    match result {
        Ok(reply) => {
            if matches!(reply, Reply::WrongArity) {
                stats::count(&stats::ERRORS, 1);
            }
            reply.send(ctx)
        }
        Err(e) => {
            stats::count(&stats::ERRORS, 1);
            ctx.reply_error(&e.to_string())
        }
    }
}

/// Runs `body`; a panic becomes `ShieldError::Panic` with its message.
pub fn run_guarded<T>(body: impl FnOnce() -> Result<T, ShieldError>) -> Result<T, ShieldError> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        Err(ShieldError::Panic(what))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_pass_through() {
        assert_eq!(run_guarded(|| Ok::<_, ShieldError>(7)), Ok(7));
        assert_eq!(
            run_guarded(|| Err::<i32, _>(ShieldError::WrongType)),
            Err(ShieldError::WrongType)
        );
    }

    #[test]
    fn a_panic_becomes_an_error_reply() {
        let slice: &[u8] = &[];
        let got = run_guarded(|| -> Result<u8, ShieldError> {
            let idx = std::hint::black_box(3);
            Ok(slice[idx])
        });
        match got {
            Err(ShieldError::Panic(msg)) => assert!(msg.contains("index out of bounds"), "{msg}"),
            other => panic!("{other:?}"),
        }
        let got =
            run_guarded(|| -> Result<u8, ShieldError> { panic!("a {} message", "formatted") });
        assert_eq!(
            got.unwrap_err().to_string(),
            "ERR internal error in redis-shield (please report it): a formatted message"
        );
    }

    #[test]
    fn release_builds_unwind() {
        // The guard only works if panics unwind: the release profile must
        // not set panic = "abort".
        let manifest = include_str!("../Cargo.toml");
        assert!(
            !manifest.contains("panic = \"abort\""),
            "panic = abort would make the guard useless"
        );
    }
}
