//! The only room with raw pointers: every call into the server's module API
//! goes through here.
//!
//! What the server hands a command (its context, its arguments) becomes a
//! [`CommandCtx`] and a slice of [`Arg`]s bound to the lifetime of that one
//! call, in [`entry`], the handler boundary: they are created nowhere else,
//! so safe code can neither keep them past the command nor forge one from a
//! pointer. The wrappers are `#[repr(transparent)]` newtypes over the
//! server's pointers and inline to the raw calls: the hot path costs what it
//! cost with raw pointers (`scripts/ir-per-call.sh` before and after).
//!
//! API functions are fetched from the pointers `RedisModule_Init` filled in
//! at load; a function the server lacks is an internal error (fail closed),
//! never a crash.

pub mod key;
pub mod module;

use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use redis_module::raw;
use shield_engine::ShieldError;

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

/// What a handler returns to the server (`REDISMODULE_OK` / `_ERR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Status(c_int);

impl Status {
    pub const OK: Status = Status(raw::REDISMODULE_OK as c_int);
    pub const ERR: Status = Status(raw::REDISMODULE_ERR as c_int);

    fn from_raw(code: c_int) -> Status {
        Status(code)
    }
}

/// The context of the command being run, valid for that call only.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct CommandCtx<'a> {
    raw: NonNull<raw::RedisModuleCtx>,
    _call: PhantomData<&'a raw::RedisModuleCtx>,
}

/// One argument of the command being run, valid for that call only.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Arg<'a> {
    raw: NonNull<raw::RedisModuleString>,
    _call: PhantomData<&'a raw::RedisModuleString>,
}

/// A command of the module: what [`entry`] calls once the server's pointers
/// are bound to the call.
pub trait Command {
    fn run(ctx: CommandCtx<'_>, args: &[Arg<'_>]) -> Status;
}

/// The handler the server calls for command `C`: the boundary where the
/// server's pointers become a [`CommandCtx`] and [`Arg`]s.
pub extern "C" fn entry<C: Command>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let Some(raw_ctx) = NonNull::new(ctx) else {
        return Status::ERR.0;
    };
    let ctx = CommandCtx {
        raw: raw_ctx,
        _call: PhantomData,
    };
    let args: &[Arg<'_>] = match usize::try_from(argc) {
        // SAFETY: the server passes `argc` valid, non-null argument pointers
        // that live for the whole call; `Arg` is a transparent wrapper of one
        // such pointer, so the slice has the same layout as `argv`.
        Ok(n) if n > 0 && !argv.is_null() => unsafe {
            std::slice::from_raw_parts(argv.cast::<Arg<'_>>(), n)
        },
        _ => &[],
    };
    C::run(ctx, args).0
}

impl<'a> Arg<'a> {
    /// The argument's bytes.
    pub fn bytes(self) -> &'a [u8] {
        // SAFETY: StringPtrLen is a core API function present on every
        // server; the pointer/length pair describes the string's buffer,
        // which lives as long as the argument.
        unsafe {
            let Some(ptr_len) = raw::RedisModule_StringPtrLen else {
                return &[];
            };
            let mut len = 0usize;
            let ptr = ptr_len(self.raw.as_ptr(), &mut len);
            if ptr.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(ptr.cast::<u8>(), len)
            }
        }
    }

    fn as_ptr(self) -> *mut raw::RedisModuleString {
        self.raw.as_ptr()
    }
}

/// The server's clock in milliseconds since the Unix epoch.
pub fn now_ms() -> Result<u64, ShieldError> {
    let milliseconds = api!(RedisModule_Milliseconds);
    // SAFETY: no arguments.
    let now = unsafe { milliseconds() };
    u64::try_from(now).map_err(|_| ShieldError::Internal("the server clock is before 1970".into()))
}

/// Replication arguments that never change, created once at load and passed
/// by reference (`s`), so the replicated write allocates only what varies.
static PXAT: AtomicPtr<raw::RedisModuleString> = AtomicPtr::new(std::ptr::null_mut());
/// The value written by nearly every call with the usual parameters.
static TILDE_ZERO: AtomicPtr<raw::RedisModuleString> = AtomicPtr::new(std::ptr::null_mut());

/// Creates the constant replication arguments; called from OnLoad.
pub fn init_constants() {
    // SAFETY: CreateString with a null context makes a string owned by the
    // module; these live as long as the module (which refuses to unload) and
    // are only handed to RedisModule_Replicate, which takes its own
    // references.
    unsafe {
        if let Some(create) = raw::RedisModule_CreateString {
            PXAT.store(create(std::ptr::null_mut(), c"PXAT".as_ptr(), 4), Relaxed);
            TILDE_ZERO.store(create(std::ptr::null_mut(), c"~0".as_ptr(), 2), Relaxed);
        }
    }
}

/// Keyspace event classes a command fires.
#[derive(Clone, Copy)]
pub enum EventClass {
    /// `$`: string commands (`set`).
    String,
    /// `g`: generic commands (`expire`).
    Generic,
}

impl<'a> CommandCtx<'a> {
    fn as_ptr(self) -> *mut raw::RedisModuleCtx {
        self.raw.as_ptr()
    }

    /// Replies with an integer.
    pub fn reply_integer(self, n: i64) -> Status {
        // SAFETY: the command's own context.
        unsafe {
            match raw::RedisModule_ReplyWithLongLong {
                Some(f) => Status::from_raw(f(self.as_ptr(), n)),
                None => Status::ERR,
            }
        }
    }

    /// Starts an array reply of `len` elements.
    pub fn reply_array(self, len: usize) -> Status {
        let Ok(len) = std::os::raw::c_long::try_from(len) else {
            return Status::ERR;
        };
        // SAFETY: the command's own context.
        unsafe {
            match raw::RedisModule_ReplyWithArray {
                Some(f) => Status::from_raw(f(self.as_ptr(), len)),
                None => Status::ERR,
            }
        }
    }

    /// Replies with one of the command's arguments (a key name).
    pub fn reply_arg(self, arg: Arg<'a>) -> Status {
        // SAFETY: the command's own context and argument.
        unsafe {
            match raw::RedisModule_ReplyWithString {
                Some(f) => Status::from_raw(f(self.as_ptr(), arg.as_ptr())),
                None => Status::ERR,
            }
        }
    }

    /// The server's standard wrong-number-of-arguments error.
    pub fn reply_wrong_arity(self) -> Status {
        // SAFETY: the command's own context.
        unsafe {
            match raw::RedisModule_WrongArity {
                Some(f) => Status::from_raw(f(self.as_ptr())),
                None => Status::ERR,
            }
        }
    }

    /// Replies with an error; `msg` starts with the error code (`ERR`,
    /// `WRONGTYPE`...). Line breaks and NULs become spaces.
    pub fn reply_error(self, msg: &str) -> Status {
        let clean: String = msg
            .chars()
            .map(|c| {
                if matches!(c, '\r' | '\n' | '\0') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let Ok(text) = std::ffi::CString::new(clean) else {
            return Status::ERR;
        };
        // SAFETY: the command's own context; text is NUL-terminated.
        unsafe {
            match raw::RedisModule_ReplyWithError {
                Some(f) => Status::from_raw(f(self.as_ptr(), text.as_ptr())),
                None => Status::ERR,
            }
        }
    }

    /// Signals that `key` was modified (WATCH, client-side caching).
    pub fn signal_modified(self, key: Arg<'a>) -> Result<(), ShieldError> {
        let signal = api!(RedisModule_SignalModifiedKey);
        // SAFETY: the command's own context and argument.
        unsafe { signal(self.as_ptr(), key.as_ptr()) };
        Ok(())
    }

    /// Fires a keyspace event, like a native command would.
    pub fn notify(
        self,
        class: EventClass,
        event: &'static std::ffi::CStr,
        key: Arg<'a>,
    ) -> Result<(), ShieldError> {
        let notify = api!(RedisModule_NotifyKeyspaceEvent);
        let class = match class {
            EventClass::String => raw::REDISMODULE_NOTIFY_STRING,
            EventClass::Generic => raw::REDISMODULE_NOTIFY_GENERIC,
        };
        // SAFETY: the command's own context and argument; event is
        // NUL-terminated.
        unsafe { notify(self.as_ptr(), class, event.as_ptr(), key.as_ptr()) };
        Ok(())
    }

    /// Queues `SET <key> <value> PXAT <ms>` for replicas and the AOF (the
    /// effect of an admitted call, never the command). `ms` is decimal.
    pub fn replicate_set(self, key: Arg<'a>, value: &[u8], ms: &[u8]) -> Result<(), ShieldError> {
        let replicate = api!(RedisModule_Replicate);
        let create = api!(RedisModule_CreateString);
        let free = api!(RedisModule_FreeString);
        let failed = || ShieldError::Storage("replicate");
        let pxat = PXAT.load(Relaxed);
        let tilde_zero = TILDE_ZERO.load(Relaxed);
        // SAFETY: every string passed is valid for the call; Replicate takes
        // its own references to `s` arguments (cheaper than its `l` format,
        // measured), so the one created here is released right after.
        unsafe {
            let ms = create(self.as_ptr(), ms.as_ptr().cast(), ms.len());
            if ms.is_null() || pxat.is_null() {
                return Err(failed());
            }
            let status = if value == b"~0" && !tilde_zero.is_null() {
                replicate(
                    self.as_ptr(),
                    c"SET".as_ptr(),
                    c"ssss".as_ptr(),
                    key.as_ptr(),
                    tilde_zero,
                    pxat,
                    ms,
                )
            } else {
                replicate(
                    self.as_ptr(),
                    c"SET".as_ptr(),
                    c"sbss".as_ptr(),
                    key.as_ptr(),
                    value.as_ptr(),
                    value.len(),
                    pxat,
                    ms,
                )
            };
            free(self.as_ptr(), ms);
            if status == raw::REDISMODULE_OK as c_int {
                Ok(())
            } else {
                Err(failed())
            }
        }
    }
}
