//! Counters for the module's INFO section (`INFO shield`).
//!
//! Commands run on the server's main thread; relaxed atomics are used only so
//! the counters can be plain statics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Calls of every SHIELD command, whatever the outcome.
pub static CALLS: AtomicU64 = AtomicU64::new(0);
/// Calls that took their tokens.
pub static ADMITTED: AtomicU64 = AtomicU64::new(0);
/// Calls refused for lack of tokens.
pub static DENIED: AtomicU64 = AtomicU64::new(0);
/// Calls answered with an error (arguments, key type, state, internal).
pub static ERRORS: AtomicU64 = AtomicU64::new(0);
/// Tokens taken by admitted calls.
pub static TOKENS_ABSORBED: AtomicU64 = AtomicU64::new(0);
/// Panics caught at the command boundary (each is also counted in ERRORS).
pub static PANICS: AtomicU64 = AtomicU64::new(0);

pub fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// The fields of the section, in order.
pub fn snapshot() -> [(&'static std::ffi::CStr, u64); 6] {
    [
        (c"calls", CALLS.load(Relaxed)),
        (c"admitted", ADMITTED.load(Relaxed)),
        (c"denied", DENIED.load(Relaxed)),
        (c"errors", ERRORS.load(Relaxed)),
        (c"tokens_absorbed", TOKENS_ABSORBED.load(Relaxed)),
        (c"panics", PANICS.load(Relaxed)),
    ]
}
