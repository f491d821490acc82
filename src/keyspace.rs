//! Reading and writing one bucket key with the low-level key API, and
//! replicating the effect (never the command).

use std::os::raw::{c_int, c_longlong};

use redis_module::raw;

use crate::bucket::{Limit, Ticks};
use crate::error::ShieldError;
use crate::server_api::{api, Ctx, RStr};
use crate::stored_state::{self, Encoded};

/// An open bucket key; closed when dropped.
pub struct BucketKey {
    ctx: Ctx,
    name: RStr,
    key: *mut raw::RedisModuleKey,
}

impl BucketKey {
    /// Opens `name` for reading and writing.
    pub fn open_writable(ctx: Ctx, name: RStr) -> Result<BucketKey, ShieldError> {
        let open = api!(RedisModule_OpenKey);
        let mode = (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int;
        // SAFETY: ctx and name come from the running command.
        let key = unsafe { open(ctx, name, mode) };
        if key.is_null() {
            return Err(ShieldError::Storage("open"));
        }
        Ok(BucketKey { ctx, name, key })
    }

    /// The bucket's full-again tick; `None` when the key does not exist
    /// (a full bucket).
    pub fn full_at(&self, limit: &Limit, now: Ticks) -> Result<Option<Ticks>, ShieldError> {
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
        let value = unsafe {
            let ptr = dma(self.key, &mut len, raw::REDISMODULE_READ as c_int);
            if ptr.is_null() {
                return Err(ShieldError::Storage("read"));
            }
            std::slice::from_raw_parts(ptr.cast::<u8>(), len)
        };
        // SAFETY: open key.
        let expire = unsafe { get_expire(self.key) };
        let expire = (expire != raw::REDISMODULE_NO_EXPIRE as raw::mstime_t).then_some(expire);
        stored_state::decode(limit, value, expire, now).map(Some)
    }

    /// Stores the new state and its expiry, then queues the same effect for
    /// replicas and the AOF as `SET key value PXAT ms`.
    pub fn store(&mut self, state: &Encoded) -> Result<(), ShieldError> {
        let create = api!(RedisModule_CreateString);
        let free = api!(RedisModule_FreeString);
        let string_set = api!(RedisModule_StringSet);
        let set_expire = api!(RedisModule_SetAbsExpire);
        let replicate = api!(RedisModule_Replicate);
        let value = state.value();
        // SAFETY: all pointers come from the server for this command; the
        // created string is released after StringSet took its own reference.
        unsafe {
            let s = create(self.ctx, value.as_ptr().cast(), value.len());
            if s.is_null() {
                return Err(ShieldError::Storage("write"));
            }
            let set = string_set(self.key, s);
            free(self.ctx, s);
            if set != raw::REDISMODULE_OK as c_int {
                return Err(ShieldError::Storage("write"));
            }
            if set_expire(self.key, state.expire_at_ms as raw::mstime_t)
                != raw::REDISMODULE_OK as c_int
            {
                return Err(ShieldError::Storage("set the expiry of"));
            }
            let replicated = replicate(
                self.ctx,
                c"SET".as_ptr(),
                c"sbcl".as_ptr(),
                self.name,
                value.as_ptr(),
                value.len(),
                c"PXAT".as_ptr(),
                state.expire_at_ms as c_longlong,
            );
            if replicated != raw::REDISMODULE_OK as c_int {
                return Err(ShieldError::Storage("replicate"));
            }
        }
        Ok(())
    }
}

impl Drop for BucketKey {
    fn drop(&mut self) {
        // SAFETY: the key was opened by open_writable and is closed once.
        unsafe {
            if let Some(close) = raw::RedisModule_CloseKey {
                close(self.key);
            }
        }
    }
}
