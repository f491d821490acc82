//! Thin, safe-as-possible wrappers over the server's module API, so that the
//! command code reads as what it does. Nothing here allocates.

use std::os::raw::c_int;

use redis_module::raw;

use crate::error::ShieldError;

pub type Ctx = *mut raw::RedisModuleCtx;
pub type RStr = *mut raw::RedisModuleString;

/// Fetches an API function pointer, or fails (closed) when the server does
/// not export it.
macro_rules! api {
    ($name:ident) => {
        // SAFETY: the pointers are written once by RedisModule_Init, before
        // any command can run, and only read afterwards.
        match unsafe { raw::$name } {
            Some(f) => f,
            None => {
                return Err(ShieldError::Internal(
                    concat!(stringify!($name), " is not available on this server").into(),
                ))
            }
        }
    };
}
pub(crate) use api;

/// The bytes of a server string (an argument). Valid while the string is.
pub fn bytes<'a>(s: RStr) -> &'a [u8] {
    // SAFETY: StringPtrLen is a core API function present on every server;
    // the pointer/length pair it returns describes the string's buffer.
    unsafe {
        let Some(ptr_len) = raw::RedisModule_StringPtrLen else {
            return &[];
        };
        let mut len = 0usize;
        let ptr = ptr_len(s, &mut len);
        if ptr.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(ptr.cast::<u8>(), len)
        }
    }
}

/// The server's clock in milliseconds since the Unix epoch.
pub fn now_ms() -> Result<u64, ShieldError> {
    let milliseconds = api!(RedisModule_Milliseconds);
    // SAFETY: no arguments.
    let now = unsafe { milliseconds() };
    u64::try_from(now).map_err(|_| ShieldError::Internal("the server clock is before 1970".into()))
}

/// Replies with an error; `msg` starts with the error code (`ERR`,
/// `WRONGTYPE`...).
pub fn reply_error(ctx: Ctx, msg: &str) -> c_int {
    // Error text must be one NUL-terminated line.
    let clean: String = msg
        .chars()
        .map(|c| {
            if c == '\r' || c == '\n' || c == '\0' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let Ok(text) = std::ffi::CString::new(clean) else {
        return raw::REDISMODULE_ERR as c_int;
    };
    // SAFETY: ctx is the command's context, text is NUL-terminated.
    unsafe {
        match raw::RedisModule_ReplyWithError {
            Some(f) => f(ctx, text.as_ptr()),
            None => raw::REDISMODULE_ERR as c_int,
        }
    }
}
