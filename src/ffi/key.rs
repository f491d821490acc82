//! An open key of the running command.

use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;

use redis_module::raw;
use shield_engine::ShieldError;

use super::{api, Arg, CommandCtx};

/// What a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Empty,
    String,
    Other,
}

/// A key opened by the running command; closed when dropped. Its string
/// buffer ([`Key::string`]) is borrowed from the key, so no write can
/// happen while it is read.
pub struct Key<'a> {
    raw: NonNull<raw::RedisModuleKey>,
    _call: PhantomData<&'a raw::RedisModuleKey>,
}

impl<'a> CommandCtx<'a> {
    /// Opens `name` for reading (`write: false`: `None` when the key does not
    /// exist) or for reading and writing.
    pub fn open_key(self, name: Arg<'a>, write: bool) -> Result<Option<Key<'a>>, ShieldError> {
        let open = api!(RedisModule_OpenKey);
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        // SAFETY: the command's own context and argument.
        let key = unsafe { open(self.as_ptr(), name.as_ptr(), mode as c_int) };
        Ok(
            NonNull::new(key.cast::<raw::RedisModuleKey>()).map(|raw| Key {
                raw,
                _call: PhantomData,
            }),
        )
    }
}

impl Key<'_> {
    fn as_ptr(&self) -> *mut raw::RedisModuleKey {
        self.raw.as_ptr()
    }

    pub fn key_type(&self) -> Result<KeyType, ShieldError> {
        let key_type = api!(RedisModule_KeyType);
        // SAFETY: an open key.
        Ok(match unsafe { key_type(self.as_ptr()) } as isize {
            raw::REDISMODULE_KEYTYPE_EMPTY => KeyType::Empty,
            raw::REDISMODULE_KEYTYPE_STRING => KeyType::String,
            _ => KeyType::Other,
        })
    }

    /// The bytes of a string key. (An integer-encoded value, such as a 1.x
    /// bucket, is converted by the server once, in place, to be read.)
    pub fn string(&mut self) -> Result<&[u8], ShieldError> {
        let dma = api!(RedisModule_StringDMA);
        let mut len = 0usize;
        // SAFETY: an open string key; the buffer stays valid until the key is
        // modified or closed, which needs `&mut self` or `self`: the borrow
        // of the returned slice prevents both.
        unsafe {
            let ptr = dma(self.as_ptr(), &mut len, raw::REDISMODULE_READ as c_int);
            if ptr.is_null() {
                return Err(ShieldError::Storage("read"));
            }
            Ok(std::slice::from_raw_parts(ptr.cast::<u8>(), len))
        }
    }

    /// The key's absolute expiry in ms, `None` when it has none.
    pub fn expire_at_ms(&self) -> Result<Option<i64>, ShieldError> {
        let get = api!(RedisModule_GetAbsExpire);
        // SAFETY: an open key.
        let at = unsafe { get(self.as_ptr()) };
        Ok((at != raw::mstime_t::from(raw::REDISMODULE_NO_EXPIRE)).then_some(at))
    }

    /// Sets the key's absolute expiry (a key opened for writing).
    pub fn set_expire_at_ms(&mut self, ms: u64) -> Result<(), ShieldError> {
        let set = api!(RedisModule_SetAbsExpire);
        let ms =
            raw::mstime_t::try_from(ms).map_err(|_| ShieldError::Storage("set the expiry of"))?;
        // SAFETY: an open key.
        if unsafe { set(self.as_ptr(), ms) } == raw::REDISMODULE_OK as c_int {
            Ok(())
        } else {
            Err(ShieldError::Storage("set the expiry of"))
        }
    }

    /// Writes `value` as the key's string, in place: the server creates the
    /// key, or unshares and resizes its value, and the bytes are copied in.
    pub fn write_string(&mut self, value: &[u8]) -> Result<(), ShieldError> {
        let truncate = api!(RedisModule_StringTruncate);
        let dma = api!(RedisModule_StringDMA);
        let failed = || ShieldError::Storage("write");
        // SAFETY: the key is open for writing; the DMA pointer is valid for
        // `len` bytes until the next modification of the key.
        unsafe {
            if truncate(self.as_ptr(), value.len()) != raw::REDISMODULE_OK as c_int {
                return Err(failed());
            }
            let mut len = 0usize;
            let ptr = dma(
                self.as_ptr(),
                &mut len,
                (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int,
            );
            if ptr.is_null() || len != value.len() {
                return Err(failed());
            }
            std::ptr::copy_nonoverlapping(value.as_ptr(), ptr.cast::<u8>(), len);
        }
        Ok(())
    }
}

impl Drop for Key<'_> {
    fn drop(&mut self) {
        // SAFETY: the key was opened by `open_key` and is closed once.
        unsafe {
            if let Some(close) = raw::RedisModule_CloseKey {
                close(self.as_ptr());
            }
        }
    }
}
