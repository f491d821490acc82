//! Values written by redis-shield 1.x (an integer token count with a TTL
//! equal to the period): read as that many tokens available at the first
//! call, stored in the 2.x form by that call even when it is denied (and
//! replicated), so that refill runs from then on and the retry-after it
//! answers holds.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use shield_testkit::{Pair, Server, ServerOptions, ShieldCommands};

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

#[test]
fn legacy_integer_values_are_tokens_left() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    set(&mut c, "old5", 5, Some(60));
    assert_eq!(c.absorb("old5", 10, 60, Some(2)), 3);
    let v = c.stored("old5").0.expect("key");
    assert!(v.starts_with(b"~"), "rewritten in the 2.x form: {v:?}");
    assert_eq!(c.absorb("old5", 10, 60, Some(3)), 0);
    assert_eq!(c.absorb("old5", 10, 60, None), -1);

    // A 1.x value above the capacity is clamped to it: a full bucket, the
    // same whenever it is read, so a denied call leaves it as it is.
    set(&mut c, "oldbig", 500, Some(60));
    assert_eq!(c.absorb("oldbig", 10, 60, Some(11)), -1);
    assert_eq!(c.stored("oldbig").0.as_deref(), Some(&b"500"[..]));
    assert_eq!(c.absorb("oldbig", 10, 60, Some(10)), 0);

    // A negative 1.x counter counts as empty.
    set(&mut c, "oldneg", -4, Some(60));
    assert_eq!(c.absorb("oldneg", 10, 60, None), -1);
}

/// The case from the field: a drained 1.x bucket used to answer the same
/// retry-after forever while denied. Now the first (denied) call stores it,
/// waiting exactly retry-after admits the retry, and reset-after is the true
/// time to full.
#[test]
fn a_denied_call_on_a_legacy_value_starts_its_refill() {
    // A replica without the module must end with the same bytes.
    let Pair { master, replica } = Pair::replica_without_module();
    let mut c = master.conn();

    set(&mut c, "old", 3, Some(60));
    let before = server_ms(&mut c);
    assert_eq!(c.absorb_details("old", 10, 10, 5), [0, 3, 2000, 7000]);
    let (value, expire) = c.stored("old");
    assert_eq!(value.as_deref(), Some(&b"~0"[..]), "stored in the 2.x form");
    let after = server_ms(&mut c);
    assert!(
        (before + 7000..=after + 7000).contains(&expire),
        "full again 7 s after the call: {expire} not in {}..={}",
        before + 7000,
        after + 7000
    );
    // The conversion is replicated like any write.
    c.wait_replicas(1);
    assert_eq!(replica.conn().stored("old"), (value, expire));

    // The reading no longer moves with the clock: 1 token per second.
    std::thread::sleep(Duration::from_millis(1000));
    let [admitted, left, retry, reset] = c.absorb_details("old", 10, 10, 5);
    assert_eq!((admitted, left), (0, 4));
    assert!((1..=1000).contains(&retry), "{retry}");
    // One more token to wait for, then five more to full.
    assert_eq!(reset, retry + 5000);
    std::thread::sleep(Duration::from_millis(retry as u64));
    assert_eq!(
        c.absorb_details("old", 10, 10, 5)[0],
        1,
        "admitted after retry-after"
    );

    // A 1.x value without a TTL, drained: 10 tokens per second.
    set(&mut c, "old0", 0, None);
    assert_eq!(c.absorb_details("old0", 10, 1, 1), [0, 0, 100, 1000]);
    let expire = c.stored("old0").1;
    assert!(expire > 0, "now a bucket with an expiry: {expire}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        c.absorb_details("old0", 10, 1, 1)[0],
        1,
        "admitted after 100 ms"
    );
}

/// `SHIELD.inspect` reads a 1.x value as the first absorb would, and writes
/// nothing: the value stays as 1.x wrote it.
#[test]
fn inspect_reads_a_legacy_value_without_writing() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    set(&mut c, "old", 3, Some(60));
    assert_eq!(c.inspect("old", 10, 10), [3, 10, 1000, 7000]);
    assert_eq!(c.stored("old").0.as_deref(), Some(&b"3"[..]));
}

/// `SHIELD.absorball` denied: its 1.x buckets are stored too (the others not).
#[test]
fn a_denied_absorball_stores_its_legacy_buckets() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    set(&mut c, "{u}old", 2, Some(60));
    assert_eq!(c.absorb("{u}new", 1, 60, None), 0);
    let new_before = c.stored("{u}new");
    let reply: redis::Value = redis::cmd("SHIELD.absorball")
        .arg(&["{u}old", "10", "10", "1", "{u}new", "1", "60", "1"])
        .query(&mut c)
        .unwrap();
    let redis::Value::Array(parts) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(parts.first(), Some(&redis::Value::Int(0)), "denied");
    assert_eq!(c.stored("{u}old").0.as_deref(), Some(&b"~0"[..]));
    assert_eq!(c.stored("{u}new"), new_before);
}

/// A key drained by `CL.THROTTLE` holds a TAT in nanoseconds: read as a 1.x
/// count it would be a full bucket and admit. It is an error instead, and
/// nothing is written.
#[test]
fn a_cl_throttle_key_is_no_legacy_bucket() {
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
