//! The algorithm's guarantees, checked again on a live server clock,
//! through both engines (the module; the Functions library on a server
//! without the module).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use shield_testkit::functions::Engine;
use shield_testkit::{engine_tests, wait_until};

engine_tests!(
    drained_bucket_polled_every_90ms_admits_about_90_percent,
    admitted_never_exceeds_capacity_plus_rate_times_elapsed,
    refill_is_continuous_not_in_window_steps,
    idle_buckets_expire_when_full,
);

fn drained_bucket_polled_every_90ms_admits_about_90_percent(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    // 10 tokens/s; drain it, then call once every 90 ms.
    assert_eq!(
        engine.absorb(&mut c, "poll", 10, 1, Some(10)),
        0,
        "{engine}"
    );
    let start = Instant::now();
    let calls = 40u32;
    let mut admitted = 0;
    for i in 1..=calls {
        // Pacing is the input of this test (the client's request rate).
        let due = start + Duration::from_millis(90 * u64::from(i));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if engine.absorb(&mut c, "poll", 10, 1, None) >= 0 {
            admitted += 1;
        }
    }
    let elapsed = start.elapsed().as_millis() as u64;
    // Exact refill over the elapsed time is elapsed/100 tokens; a bucket that
    // throws away fractional refill would admit about half the calls.
    let upper = elapsed / 100 + 1;
    assert!(
        admitted as u64 <= upper,
        "{engine}: admitted {admitted} > {upper} in {elapsed} ms"
    );
    assert!(
        admitted >= 34,
        "{engine}: admitted only {admitted} of {calls} (elapsed {elapsed} ms)"
    );
}

fn admitted_never_exceeds_capacity_plus_rate_times_elapsed(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    let (capacity, period) = (20u64, 2u64); // 10 tokens/s
    let start = Instant::now();
    let mut admitted = 0u64;
    while start.elapsed() < Duration::from_millis(1_500) {
        if engine.absorb(&mut c, "hammer", capacity, period, None) >= 0 {
            admitted += 1;
        }
    }
    // Measured from before the first call to after the last, so the server's
    // own interval is no longer than this.
    let elapsed_ms = start.elapsed().as_millis() as u64;
    let bound = capacity + capacity * elapsed_ms / (period * 1000);
    assert!(
        admitted <= bound,
        "{engine}: {admitted} admitted > bound {bound} in {elapsed_ms} ms"
    );
    // And it did refill: at least the burst plus most of the refill.
    assert!(
        admitted >= capacity + 12,
        "{engine}: only {admitted} admitted in {elapsed_ms} ms"
    );
}

fn refill_is_continuous_not_in_window_steps(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    // 2 tokens per second: drained, a token is back after 500 ms, not after
    // the whole 1 s period (a fixed window would need the full second).
    assert_eq!(engine.absorb(&mut c, "cont", 2, 1, Some(2)), 0, "{engine}");
    let drained = Instant::now();
    assert_eq!(engine.absorb(&mut c, "cont", 2, 1, None), -1, "{engine}");
    wait_until(
        Duration::from_secs(3),
        &format!("{engine}: a token to come back"),
        || engine.absorb(&mut c, "cont", 2, 1, None) == 0,
    );
    let took = drained.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "{engine}: refill took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(450),
        "{engine}: refill took only {took:?}"
    );
}

fn idle_buckets_expire_when_full(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    assert_eq!(engine.absorb(&mut c, "idle", 4, 1, Some(1)), 3, "{engine}");
    let pttl: i64 = redis::cmd("PTTL").arg("idle").query(&mut c).unwrap();
    assert!(
        (1..=250).contains(&pttl),
        "{engine}: pttl {pttl}: one token of 4/s is 250 ms"
    );
    wait_until(
        Duration::from_secs(3),
        &format!("{engine}: the idle bucket to expire"),
        || {
            let n: i64 = redis::cmd("EXISTS").arg("idle").query(&mut c).unwrap();
            n == 0
        },
    );
    // Expired means full: the whole capacity is there again.
    assert_eq!(engine.absorb(&mut c, "idle", 4, 1, Some(4)), 0, "{engine}");
}
