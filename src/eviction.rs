//! Watching the server's eviction settings.
//!
//! A bucket is a plain string key with an expiry, so an evicting
//! `maxmemory-policy` (any but `noeviction`: `allkeys-*` and `volatile-*`
//! alike, since every bucket has a TTL) can delete it under memory pressure,
//! and a deleted bucket is a full one: it admits its whole capacity again. A
//! module cannot make a string key unevictable, so this file makes the risk
//! visible: it reads `maxmemory` and `maxmemory-policy` at load and again
//! after every `CONFIG SET` (the server's configuration-change event), logs a
//! warning when evictions can reset buckets, and reports it in `INFO shield`.
//! While they can, and where the server hands evicted keys to modules (the
//! key event of Redis 7.2+ and Valkey), it counts the evicted keys that look
//! like buckets.
//!
//! Nothing here runs on a command's path: the commands never read this state.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use redis_module::raw;

use crate::server_api::Ctx;
use crate::server_info::{log, ServerInfo};
use crate::stored_state::MAX_VALUE_LEN;

/// What the server was last seen to be configured with.
struct Settings {
    policy: String,
    maxmemory: u64,
    /// Whether the server reports evicted keys to modules at all.
    key_events_supported: bool,
    /// Whether we are subscribed to them now (only while evictions can
    /// reset buckets: the event fires for every deleted key, so it is not
    /// paid for when it cannot matter).
    key_events_on: bool,
}

impl Settings {
    fn can_reset_buckets(&self) -> bool {
        self.maxmemory > 0 && self.policy != "noeviction"
    }
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    policy: String::new(),
    maxmemory: 0,
    key_events_supported: false,
    key_events_on: false,
});

/// Evicted keys that look like buckets (see [`on_key_event`]).
static BUCKETS_EVICTED: AtomicU64 = AtomicU64::new(0);

const CONFIG_EVENT: raw::RedisModuleEvent = raw::RedisModuleEvent {
    id: raw::REDISMODULE_EVENT_CONFIG,
    dataver: 1,
};
const KEY_EVENT: raw::RedisModuleEvent = raw::RedisModuleEvent {
    id: raw::REDISMODULE_EVENT_KEY,
    dataver: 1,
};

fn settings() -> std::sync::MutexGuard<'static, Settings> {
    SETTINGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Called from OnLoad: reads the settings, warns if needed, and subscribes
/// to configuration changes.
pub fn watch(ctx: Ctx) {
    // SAFETY: OnLoad context; the callback lives as long as the module
    // (which refuses to unload).
    let subscribed = unsafe {
        raw::RedisModule_SubscribeToServerEvent.is_some_and(|subscribe| {
            subscribe(ctx, CONFIG_EVENT, Some(on_config_change)) == raw::REDISMODULE_OK as c_int
        })
    };
    // SAFETY: a pure query of the server's capabilities.
    let key_events = unsafe {
        raw::RedisModule_IsSubEventSupported.is_some_and(|supported| {
            supported(KEY_EVENT, raw::REDISMODULE_SUBEVENT_KEY_EVICTED) != 0
        })
    };
    settings().key_events_supported = key_events;
    if !subscribed {
        log(
            ctx,
            c"warning",
            "redis-shield: could not subscribe to configuration changes: the eviction \
             settings in INFO shield are the ones read at load",
        );
    }
    refresh(ctx);
}

/// Re-reads `maxmemory` and `maxmemory-policy`; logs when the risk appears
/// or goes, and (un)subscribes from evicted keys accordingly.
pub fn refresh(ctx: Ctx) {
    let Some(memory) = ServerInfo::read(ctx, c"memory") else {
        return;
    };
    let policy = memory.text(c"maxmemory_policy").unwrap_or_default();
    let maxmemory = memory.unsigned(c"maxmemory").unwrap_or(0);
    drop(memory);
    let mut s = settings();
    let before = (s.policy.is_empty(), s.can_reset_buckets());
    if s.policy == policy && s.maxmemory == maxmemory {
        return;
    }
    s.policy = policy;
    s.maxmemory = maxmemory;
    let now = s.can_reset_buckets();
    if now && (before.0 || !before.1) {
        log(
            ctx,
            c"warning",
            &format!(
                "redis-shield: maxmemory-policy is {} with maxmemory {}: the server may evict \
                 bucket keys under memory pressure, and an evicted bucket is full again (it \
                 admits its whole capacity). Use maxmemory-policy noeviction on a server that \
                 holds rate limits (see README, 'Eviction').",
                s.policy, s.maxmemory
            ),
        );
    } else if !now && !before.0 && before.1 {
        log(
            ctx,
            c"notice",
            &format!(
                "redis-shield: maxmemory-policy is {} with maxmemory {}: buckets can no longer \
                 be evicted",
                s.policy, s.maxmemory
            ),
        );
    }
    if s.key_events_supported && now != s.key_events_on {
        let callback: raw::RedisModuleEventCallback = if now { Some(on_key_event) } else { None };
        // SAFETY: a live context of this module; a null callback unsubscribes.
        let done = unsafe {
            raw::RedisModule_SubscribeToServerEvent.is_some_and(|subscribe| {
                subscribe(ctx, KEY_EVENT, callback) == raw::REDISMODULE_OK as c_int
            })
        };
        if done {
            s.key_events_on = now;
        }
    }
}

extern "C" fn on_config_change(
    ctx: Ctx,
    _event: raw::RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    // CONFIG SET is rare: re-read both settings whatever changed.
    let _ = crate::panic_guard::run(|| {
        refresh(ctx);
        Ok(())
    });
}

/// Counts an evicted key that looks like a bucket: a string with an expiry,
/// no longer than a bucket's value. The key is handed over before it is
/// freed, but its value cannot be read safely here (reading an encoded
/// string would make the server rewrite it in the middle of its deletion),
/// so another short string key with a TTL is counted too.
extern "C" fn on_key_event(
    _ctx: Ctx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    if subevent != raw::REDISMODULE_SUBEVENT_KEY_EVICTED || data.is_null() {
        return;
    }
    // SAFETY: for the key event, data is a RedisModuleKeyInfo whose key is
    // open for reading for the duration of the callback; only metadata is
    // read.
    let looks_like_a_bucket = unsafe {
        let key = (*data.cast::<raw::RedisModuleKeyInfo>()).key;
        let (Some(key_type), Some(expire), Some(length)) = (
            raw::RedisModule_KeyType,
            raw::RedisModule_GetAbsExpire,
            raw::RedisModule_ValueLength,
        ) else {
            return;
        };
        !key.is_null()
            && key_type(key) as isize == raw::REDISMODULE_KEYTYPE_STRING
            && expire(key) != raw::mstime_t::from(raw::REDISMODULE_NO_EXPIRE)
            && length(key) <= MAX_VALUE_LEN
    };
    if looks_like_a_bucket {
        BUCKETS_EVICTED.fetch_add(1, Relaxed);
    }
}

/// Fills the `shield_eviction` section of `INFO`.
pub fn add_info(ctx: *mut raw::RedisModuleInfoCtx) {
    let s = settings();
    // SAFETY: ctx is the INFO callback's context; strings are NUL-terminated.
    unsafe {
        let (Some(section), Some(text), Some(number)) = (
            raw::RedisModule_InfoAddSection,
            raw::RedisModule_InfoAddFieldCString,
            raw::RedisModule_InfoAddFieldULongLong,
        ) else {
            return;
        };
        if section(ctx, c"eviction".as_ptr()) != raw::REDISMODULE_OK as c_int {
            return;
        }
        let policy = std::ffi::CString::new(s.policy.as_str()).unwrap_or_default();
        text(ctx, c"maxmemory_policy".as_ptr(), policy.as_ptr());
        number(ctx, c"maxmemory".as_ptr(), s.maxmemory);
        number(
            ctx,
            c"evictions_can_reset_buckets".as_ptr(),
            u64::from(s.can_reset_buckets()),
        );
        if s.key_events_supported {
            number(
                ctx,
                c"buckets_evicted".as_ptr(),
                BUCKETS_EVICTED.load(Relaxed),
            );
        }
    }
}
