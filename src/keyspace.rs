//! Reading and writing one bucket key with the low-level key API, and
//! replicating the effect (never the command).
//!
//! The hot path is kept to what a native `SET key value PXAT ms` does: one
//! key lookup, one expiry lookup, the value rewritten in place only when its
//! bytes change (with the usual parameters they never do: `~0`), one expiry
//! write, then the signals and the replication of the effect. Nothing is
//! allocated here except by the server itself (a new key, the replicated
//! arguments).

use std::os::raw::c_int;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use redis_module::raw;

use crate::bucket::{Limit, Ticks};
use crate::error::ShieldError;
use crate::server_api::{api, Ctx, RStr};
use crate::stored_state::{self, Decimal, Encoded, MAX_VALUE_LEN};

/// Replication arguments that never change, created once at load and passed
/// by reference (`s`), so the replicated write allocates only what varies.
static PXAT: AtomicPtr<raw::RedisModuleString> = AtomicPtr::new(null_mut());
/// The value written by nearly every call with the usual parameters.
static TILDE_ZERO: AtomicPtr<raw::RedisModuleString> = AtomicPtr::new(null_mut());

/// Creates the constant replication arguments; called from OnLoad.
pub fn init_constants() {
    // SAFETY: CreateString with a null context makes a string owned by the
    // module; these live as long as the module and are only ever handed to
    // RedisModule_Replicate, which takes its own references.
    unsafe {
        if let Some(create) = raw::RedisModule_CreateString {
            PXAT.store(create(null_mut(), c"PXAT".as_ptr(), 4), Relaxed);
            TILDE_ZERO.store(create(null_mut(), c"~0".as_ptr(), 2), Relaxed);
        }
    }
}

/// How a key is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Inspection: works on replicas; nothing is written.
    Read,
    /// Absorbing: reads, then writes when admitted.
    Write,
}

/// An open bucket key; closed when dropped.
pub struct BucketKey {
    ctx: Ctx,
    name: RStr,
    key: *mut raw::RedisModuleKey,
    /// The value as read, when it is short enough to be one of ours: a write
    /// of the same bytes only moves the expiry.
    current: Option<([u8; MAX_VALUE_LEN], usize)>,
    /// The state read is a 1.x value that must be stored in the 2.x form by
    /// this call, whatever it decides (see [`stored_state::Decoded`]).
    rewrite: Option<Ticks>,
}

impl BucketKey {
    pub fn open(ctx: Ctx, name: RStr, access: Access) -> Result<BucketKey, ShieldError> {
        let open = api!(RedisModule_OpenKey);
        let mode = match access {
            Access::Read => raw::REDISMODULE_READ,
            Access::Write => raw::REDISMODULE_READ | raw::REDISMODULE_WRITE,
        };
        // SAFETY: ctx and name come from the running command.
        let key = unsafe { open(ctx, name, mode as c_int) };
        // Opened for reading, a missing key has no handle: a full bucket.
        if key.is_null() && access == Access::Write {
            return Err(ShieldError::Storage("open"));
        }
        Ok(BucketKey {
            ctx,
            name,
            key,
            current: None,
            rewrite: None,
        })
    }

    pub fn name(&self) -> RStr {
        self.name
    }

    /// The bucket's full-again tick; `None` when the key does not exist
    /// (a full bucket).
    pub fn full_at(&mut self, limit: &Limit, now: Ticks) -> Result<Option<Ticks>, ShieldError> {
        if self.key.is_null() {
            return Ok(None);
        }
        let key_type = api!(RedisModule_KeyType);
        // SAFETY: self.key is open.
        match unsafe { key_type(self.key) } as isize {
            raw::REDISMODULE_KEYTYPE_EMPTY => return Ok(None),
            raw::REDISMODULE_KEYTYPE_STRING => {}
            _ => return Err(ShieldError::WrongType),
        }
        let dma = api!(RedisModule_StringDMA);
        let get_expire = api!(RedisModule_GetAbsExpire);
        let mut len = 0usize;
        // SAFETY: the key is an open string key; the buffer stays valid until
        // the key is modified or closed, and it is only read before that.
        // (A read of a value that is not a plain sds, like an integer-encoded
        // 1.x value, makes the server convert it once, in place.)
        let value = unsafe {
            let ptr = dma(self.key, &mut len, raw::REDISMODULE_READ as c_int);
            if ptr.is_null() {
                return Err(ShieldError::Storage("read"));
            }
            std::slice::from_raw_parts(ptr.cast::<u8>(), len)
        };
        self.current = None;
        if value.len() <= MAX_VALUE_LEN {
            let mut buf = [0u8; MAX_VALUE_LEN];
            if let Some(dst) = buf.get_mut(..value.len()) {
                dst.copy_from_slice(value);
                self.current = Some((buf, value.len()));
            }
        }
        // SAFETY: open key.
        let expire = unsafe { get_expire(self.key) };
        let expire = (expire != raw::mstime_t::from(raw::REDISMODULE_NO_EXPIRE)).then_some(expire);
        let decoded = stored_state::decode(limit, value, expire, now)?;
        self.rewrite = decoded.rewrite.then_some(decoded.full_at);
        Ok(Some(decoded.full_at))
    }

    /// For a call that takes nothing from a 1.x bucket (denied): stores the
    /// state it was read as, so that refill runs from this moment and the
    /// retry-after it answered holds. A no-op for any other bucket (the
    /// usual case: a denied call writes nothing).
    pub fn store_if_legacy(&mut self, limit: &Limit) -> Result<(), ShieldError> {
        match self.rewrite {
            Some(full_at) => self.store(&stored_state::encode(limit, full_at)?),
            None => Ok(()),
        }
    }

    /// Stores the new state and its expiry (on a key opened with
    /// [`Access::Write`]), signals the write like a native `SET` would
    /// (WATCH, client-side caching, keyspace events), and queues the same
    /// effect for replicas and the AOF as `SET key value PXAT ms`.
    pub fn store(&mut self, state: &Encoded) -> Result<(), ShieldError> {
        if self.key.is_null() {
            return Err(ShieldError::Storage("write"));
        }
        let set_expire = api!(RedisModule_SetAbsExpire);
        let signal = api!(RedisModule_SignalModifiedKey);
        let notify = api!(RedisModule_NotifyKeyspaceEvent);
        let value = state.value();
        let unchanged = self
            .current
            .as_ref()
            .is_some_and(|(buf, len)| buf.get(..*len) == Some(value));
        if !unchanged {
            self.overwrite_value(value)?;
        }
        // SAFETY: all pointers come from the server for this command.
        unsafe {
            if set_expire(self.key, state.expire_at_ms as raw::mstime_t)
                != raw::REDISMODULE_OK as c_int
            {
                return Err(ShieldError::Storage("set the expiry of"));
            }
            signal(self.ctx, self.name);
            notify(
                self.ctx,
                raw::REDISMODULE_NOTIFY_STRING,
                c"set".as_ptr(),
                self.name,
            );
            notify(
                self.ctx,
                raw::REDISMODULE_NOTIFY_GENERIC,
                c"expire".as_ptr(),
                self.name,
            );
            let replicated = self.replicate_set(value, state.expire_at_ms)?;
            if replicated != raw::REDISMODULE_OK as c_int {
                return Err(ShieldError::Storage("replicate"));
            }
        }
        self.current = None;
        self.rewrite = None;
        Ok(())
    }

    /// Queues `SET <key> <value> PXAT <ms>` for replicas and the AOF.
    fn replicate_set(&self, value: &[u8], expire_at_ms: i64) -> Result<c_int, ShieldError> {
        let replicate = api!(RedisModule_Replicate);
        let create = api!(RedisModule_CreateString);
        let free = api!(RedisModule_FreeString);
        let pxat = PXAT.load(Relaxed);
        let tilde_zero = TILDE_ZERO.load(Relaxed);
        let mut digits = Decimal::default();
        let ms = digits.format(u64::try_from(expire_at_ms).unwrap_or(0));
        // SAFETY: every string passed is valid for the call; Replicate takes
        // its own references to `s` arguments (cheaper than its `l` format,
        // measured), so the one created here is released right after.
        unsafe {
            let ms = create(self.ctx, ms.as_ptr().cast(), ms.len());
            if ms.is_null() || pxat.is_null() {
                return Err(ShieldError::Storage("replicate"));
            }
            let status = if value == b"~0" && !tilde_zero.is_null() {
                replicate(
                    self.ctx,
                    c"SET".as_ptr(),
                    c"ssss".as_ptr(),
                    self.name,
                    tilde_zero,
                    pxat,
                    ms,
                )
            } else {
                replicate(
                    self.ctx,
                    c"SET".as_ptr(),
                    c"sbss".as_ptr(),
                    self.name,
                    value.as_ptr(),
                    value.len(),
                    pxat,
                    ms,
                )
            };
            free(self.ctx, ms);
            Ok(status)
        }
    }

    /// Writes `value` as the key's string, in place: the server creates the
    /// key, or unshares and resizes its value, and the bytes are copied in.
    fn overwrite_value(&mut self, value: &[u8]) -> Result<(), ShieldError> {
        let truncate = api!(RedisModule_StringTruncate);
        let dma = api!(RedisModule_StringDMA);
        // SAFETY: the key is open for writing; the DMA pointer is valid for
        // `len` bytes until the next modification of the key.
        unsafe {
            if truncate(self.key, value.len()) != raw::REDISMODULE_OK as c_int {
                return Err(ShieldError::Storage("write"));
            }
            let mut len = 0usize;
            let ptr = dma(
                self.key,
                &mut len,
                (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int,
            );
            if ptr.is_null() || len != value.len() {
                return Err(ShieldError::Storage("write"));
            }
            std::ptr::copy_nonoverlapping(value.as_ptr(), ptr.cast::<u8>(), len);
        }
        Ok(())
    }
}

impl Drop for BucketKey {
    fn drop(&mut self) {
        // SAFETY: the key was opened by `open` and is closed once.
        unsafe {
            if let Some(close) = raw::RedisModule_CloseKey {
                if !self.key.is_null() {
                    close(self.key);
                }
            }
        }
    }
}
