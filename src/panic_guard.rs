//! The guard at the command boundary: a panic inside a command must not
//! unwind into the server (that would abort it); it becomes an error reply.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::ShieldError;

/// Runs `body`; a panic becomes `ShieldError::Panic` with its message.
pub fn run<T>(body: impl FnOnce() -> Result<T, ShieldError>) -> Result<T, ShieldError> {
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
        assert_eq!(run(|| Ok::<_, ShieldError>(7)), Ok(7));
        assert_eq!(
            run(|| Err::<i32, _>(ShieldError::WrongType)),
            Err(ShieldError::WrongType)
        );
    }

    #[test]
    fn a_panic_becomes_an_error_reply() {
        let slice: &[u8] = &[];
        let got = run(|| -> Result<u8, ShieldError> {
            let idx = std::hint::black_box(3);
            Ok(slice[idx])
        });
        match got {
            Err(ShieldError::Panic(msg)) => assert!(msg.contains("index out of bounds"), "{msg}"),
            other => panic!("{other:?}"),
        }
        let got = run(|| -> Result<u8, ShieldError> { panic!("a {} message", "formatted") });
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
