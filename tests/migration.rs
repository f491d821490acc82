//! Values written by redis-shield 1.x (an integer token count with a TTL
//! equal to the period): read as that many tokens available at the first
//! call, stored in the 2.x form by that call even when it is denied (and
//! replicated), so that refill runs from then on and the retry-after it
//! answers holds. Through both engines: the module, and the Functions
//! library on a server without the module (it reads 1.x values the same
//! way); the CL.THROTTLE case needs the module's `CL.THROTTLE` and `GCRA`.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use shield_testkit::functions::Engine;
use shield_testkit::{engine_tests, Pair, Server, ServerOptions, ShieldCommands};

engine_tests!(
    legacy_integer_values_are_tokens_left,
    a_denied_call_on_a_legacy_value_starts_its_refill,
    inspect_reads_a_legacy_value_without_writing,
    a_denied_absorball_stores_its_legacy_buckets,
);

fn set(c: &mut redis::Connection, key: &str, value: i64, ttl_secs: Option<u64>) {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if let Some(ttl) = ttl_secs {
        cmd.arg("EX").arg(ttl);
    }
    let _: () = cmd.query(c).unwrap();
}

fn server_ms(c: &mut redis::Connection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(c).unwrap();
    secs * 1000 + micros / 1000
}

fn legacy_integer_values_are_tokens_left(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    set(&mut c, "old5", 5, Some(60));
    assert_eq!(engine.absorb(&mut c, "old5", 10, 60, Some(2)), 3);
    let v = c.stored("old5").0.expect("key");
    assert!(
        v.starts_with(b"~"),
        "{engine}: rewritten in the 2.x form: {v:?}"
    );
    assert_eq!(engine.absorb(&mut c, "old5", 10, 60, Some(3)), 0);
    assert_eq!(engine.absorb(&mut c, "old5", 10, 60, None), -1);

    // A 1.x value above the capacity is clamped to it: a full bucket, the
    // same whenever it is read, so a denied call leaves it as it is.
    set(&mut c, "oldbig", 500, Some(60));
    assert_eq!(engine.absorb(&mut c, "oldbig", 10, 60, Some(11)), -1);
    assert_eq!(
        c.stored("oldbig").0.as_deref(),
        Some(&b"500"[..]),
        "{engine}"
    );
    assert_eq!(engine.absorb(&mut c, "oldbig", 10, 60, Some(10)), 0);

    // A negative 1.x counter counts as empty.
    set(&mut c, "oldneg", -4, Some(60));
    assert_eq!(engine.absorb(&mut c, "oldneg", 10, 60, None), -1);
}

/// The case from the field: a drained 1.x bucket used to answer the same
/// retry-after forever while denied. Now the first (denied) call stores it,
/// waiting exactly retry-after admits the retry, and reset-after is the true
/// time to full.
fn a_denied_call_on_a_legacy_value_starts_its_refill(engine: Engine) {
    // A replica without the module must end with the same bytes.
    let Pair { master, replica } = engine.start_pair_with(
        ServerOptions::default(),
        ServerOptions::default().without_module(),
    );
    let mut c = master.conn();

    set(&mut c, "old", 3, Some(60));
    let before = server_ms(&mut c);
    assert_eq!(
        engine.absorb_details(&mut c, "old", 10, 10, 5),
        [0, 3, 2000, 7000]
    );
    let (value, expire) = c.stored("old");
    assert_eq!(
        value.as_deref(),
        Some(&b"~0"[..]),
        "{engine}: stored in the 2.x form"
    );
    let after = server_ms(&mut c);
    assert!(
        (before + 7000..=after + 7000).contains(&expire),
        "{engine}: full again 7 s after the call: {expire} not in {}..={}",
        before + 7000,
        after + 7000
    );
    // The conversion is replicated like any write.
    assert_eq!(c.wait_replicas(1), 1, "{engine}");
    assert_eq!(replica.conn().stored("old"), (value, expire), "{engine}");

    // The reading no longer moves with the clock: 1 token per second.
    std::thread::sleep(Duration::from_millis(1000));
    let [admitted, left, retry, reset] = engine.absorb_details(&mut c, "old", 10, 10, 5);
    assert_eq!((admitted, left), (0, 4), "{engine}");
    assert!((1..=1000).contains(&retry), "{engine}: {retry}");
    // One more token to wait for, then five more to full.
    assert_eq!(reset, retry + 5000, "{engine}");
    std::thread::sleep(Duration::from_millis(retry as u64));
    assert_eq!(
        engine.absorb_details(&mut c, "old", 10, 10, 5)[0],
        1,
        "{engine}: admitted after retry-after"
    );

    // A 1.x value without a TTL, drained: 10 tokens per second.
    set(&mut c, "old0", 0, None);
    assert_eq!(
        engine.absorb_details(&mut c, "old0", 10, 1, 1),
        [0, 0, 100, 1000]
    );
    let expire = c.stored("old0").1;
    assert!(
        expire > 0,
        "{engine}: now a bucket with an expiry: {expire}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        engine.absorb_details(&mut c, "old0", 10, 1, 1)[0],
        1,
        "{engine}: admitted after 100 ms"
    );
}

/// `SHIELD.inspect` reads a 1.x value as the first absorb would, and writes
/// nothing: the value stays as 1.x wrote it.
fn inspect_reads_a_legacy_value_without_writing(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    set(&mut c, "old", 3, Some(60));
    assert_eq!(engine.inspect(&mut c, "old", 10, 10), [3, 10, 1000, 7000]);
    assert_eq!(c.stored("old").0.as_deref(), Some(&b"3"[..]), "{engine}");
}

/// `SHIELD.absorball` denied: its 1.x buckets are stored too (the others not).
fn a_denied_absorball_stores_its_legacy_buckets(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    set(&mut c, "{u}old", 2, Some(60));
    assert_eq!(engine.absorb(&mut c, "{u}new", 1, 60, None), 0);
    let new_before = c.stored("{u}new");
    let (admitted, ..) = engine.absorb_all(&mut c, &[("{u}old", 10, 10, 1), ("{u}new", 1, 60, 1)]);
    assert_eq!(admitted, 0, "{engine}: denied");
    assert_eq!(
        c.stored("{u}old").0.as_deref(),
        Some(&b"~0"[..]),
        "{engine}"
    );
    assert_eq!(c.stored("{u}new"), new_before, "{engine}");
}

/// A key drained by `CL.THROTTLE` holds a TAT in nanoseconds: read as a 1.x
/// count it would be a full bucket and admit. It is an error instead, and
/// nothing is written.
#[test]
fn a_cl_throttle_key_is_no_legacy_bucket_module_only() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let throttle = |c: &mut redis::Connection| -> Vec<i64> {
        redis::cmd("CL.THROTTLE")
            .arg(&["c", "0", "1", "3600"])
            .query(c)
            .unwrap()
    };
    assert_eq!(throttle(&mut c)[0], 0);
    assert_eq!(throttle(&mut c)[0], 1, "drained");
    let before = c.stored("c");
    for cmd in [
        &["SHIELD.absorb", "c", "1", "3600"][..],
        &["GCRA", "c", "0", "1", "3600"],
    ] {
        let err = c.command_err(cmd[0], &cmd[1..]);
        assert!(err.contains("not a redis-shield bucket"), "{cmd:?}: {err}");
    }
    assert_eq!(c.stored("c"), before, "untouched");
}
