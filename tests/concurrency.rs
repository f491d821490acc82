//! Many clients on one key: exactly `capacity` tokens in total, through both
//! engines (the module; the Functions library on a server without it).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shield_testkit::engine_tests;
use shield_testkit::functions::Engine;

engine_tests!(
    concurrent_clients_on_one_key_admit_exactly_capacity,
    concurrent_multi_token_calls_never_overdraw,
);

fn concurrent_clients_on_one_key_admit_exactly_capacity(engine: Engine) {
    let s = engine.start_server();
    // Refill of 1000 tokens per ~31 years: nothing refills during the test.
    let (capacity, period) = (1_000u64, 1_000_000_000u64);
    let admitted = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let mut c = s.conn();
            let admitted = Arc::clone(&admitted);
            let denied = Arc::clone(&denied);
            std::thread::spawn(move || {
                for _ in 0..150 {
                    if engine.absorb(&mut c, "shared", capacity, period, None) >= 0 {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        denied.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert_eq!(admitted.load(Ordering::Relaxed), capacity, "{engine}");
    assert_eq!(
        denied.load(Ordering::Relaxed),
        16 * 150 - capacity,
        "{engine}"
    );
}

fn concurrent_multi_token_calls_never_overdraw(engine: Engine) {
    let s = engine.start_server();
    let (capacity, period) = (997u64, 1_000_000_000u64);
    let taken = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let mut c = s.conn();
            let taken = Arc::clone(&taken);
            std::thread::spawn(move || {
                let n = 1 + i % 5;
                for _ in 0..100 {
                    if engine.absorb(&mut c, "multi", capacity, period, Some(n)) >= 0 {
                        taken.fetch_add(n, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let taken = taken.load(Ordering::Relaxed);
    let mut c = s.conn();
    // Whatever is left, plus what was taken, is the capacity: nothing lost,
    // nothing created.
    let mut left = 0;
    while engine.absorb(&mut c, "multi", capacity, period, Some(1)) >= 0 {
        left += 1;
    }
    assert_eq!(taken + left, capacity, "{engine}");
}
