//! Watching the server's eviction settings.
//!
//! A bucket is a plain string key with an expiry, so an evicting
//! `maxmemory-policy` (any but `noeviction`: `allkeys-*` and `volatile-*`
//! alike, since every bucket has a TTL) can delete it under memory pressure,
//! and a deleted bucket is a full one: it admits its whole capacity again. A
//! module cannot make a string key unevictable, so this room makes the risk
//! visible: it reads `maxmemory` and `maxmemory-policy` at load and again
//! after every `CONFIG SET` (the server's configuration-change event), logs a
//! warning when evictions can reset buckets, and reports it in `INFO shield`.
//! While they can, and where the server hands evicted keys to modules (the
//! key event of Redis 7.2+ and Valkey), it counts the evicted keys that look
//! like buckets.
//!
//! Nothing here runs on a command's path: the commands never read this state.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use shield_engine::MAX_VALUE_LEN;

use crate::ffi::module::{evictions_reported, EvictedKey, InfoCtx, ModuleCtx, ServerEvents};

/// What the server was last seen to be configured with.
struct Settings {
    policy: String,
    maxmemory: u64,
    /// Whether the server reports evicted keys to modules at all.
    evictions_reported: bool,
    /// Whether we listen to them now: only while evictions can reset
    /// buckets (the event fires for every deleted key, so it is not paid for
    /// when it cannot matter).
    listening: bool,
}

impl Settings {
    fn can_reset_buckets(&self) -> bool {
        self.maxmemory > 0 && self.policy != "noeviction"
    }
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    policy: String::new(),
    maxmemory: 0,
    evictions_reported: false,
    listening: false,
});

/// Evicted keys that look like buckets (see [`Events::key_evicted`]).
static BUCKETS_EVICTED: AtomicU64 = AtomicU64::new(0);

fn settings() -> MutexGuard<'static, Settings> {
    SETTINGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Called from OnLoad: subscribes to configuration changes, reads the
/// settings and warns if needed.
pub fn watch(ctx: ModuleCtx<'_>) {
    if !ctx.subscribe_config_changes::<Events>() {
        ctx.log(
            c"warning",
            "redis-shield: could not subscribe to configuration changes: the eviction \
             settings in INFO shield are the ones read at load",
        );
    }
    settings().evictions_reported = evictions_reported();
    refresh(ctx);
}

/// Re-reads `maxmemory` and `maxmemory-policy`; logs when the risk appears
/// or goes, and starts or stops counting evicted buckets accordingly.
fn refresh(ctx: ModuleCtx<'_>) {
    let Some(memory) = ctx.server_info(c"memory") else {
        return;
    };
    let policy = memory.text(c"maxmemory_policy").unwrap_or_default();
    let maxmemory = memory.unsigned(c"maxmemory").unwrap_or(0);
    drop(memory);
    let mut s = settings();
    if s.policy == policy && s.maxmemory == maxmemory {
        return;
    }
    let first_reading = s.policy.is_empty();
    let could = s.can_reset_buckets();
    s.policy = policy;
    s.maxmemory = maxmemory;
    let can = s.can_reset_buckets();
    if can && (first_reading || !could) {
        ctx.log(
            c"warning",
            &format!(
                "redis-shield: maxmemory-policy is {} with maxmemory {}: the server may evict \
                 bucket keys under memory pressure, and an evicted bucket is full again (it \
                 admits its whole capacity). Use maxmemory-policy noeviction on a server that \
                 holds rate limits (see README, 'Eviction').",
                s.policy, s.maxmemory
            ),
        );
    } else if !can && could {
        ctx.log(
            c"notice",
            &format!(
                "redis-shield: maxmemory-policy is {} with maxmemory {}: buckets can no longer \
                 be evicted",
                s.policy, s.maxmemory
            ),
        );
    }
    if s.evictions_reported && can != s.listening && ctx.subscribe_evictions::<Events>(can) {
        s.listening = can;
    }
}

struct Events;

impl ServerEvents for Events {
    fn config_changed(ctx: ModuleCtx<'_>) {
        // CONFIG SET is rare: re-read both settings whatever changed.
        let _ = crate::handler::run_guarded(|| {
            refresh(ctx);
            Ok(())
        });
    }

    /// Counts an evicted key that looks like a bucket: a string with an
    /// expiry, no longer than a bucket's value. Its value cannot be read
    /// safely here, so another short string key with a TTL counts too.
    fn key_evicted(key: EvictedKey<'_>) {
        if key.is_short_string_with_expiry(MAX_VALUE_LEN) {
            BUCKETS_EVICTED.fetch_add(1, Relaxed);
        }
    }
}

/// Fills the `shield_eviction` section of `INFO`.
pub fn add_info(info: InfoCtx<'_>) {
    let s = settings();
    if !info.section(c"eviction") {
        return;
    }
    info.text(c"maxmemory_policy", &s.policy);
    info.number(c"maxmemory", s.maxmemory);
    info.number(
        c"evictions_can_reset_buckets",
        u64::from(s.can_reset_buckets()),
    );
    if s.evictions_reported {
        info.number(c"buckets_evicted", BUCKETS_EVICTED.load(Relaxed));
    }
}
