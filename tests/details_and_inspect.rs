//! `SHIELD.absorb ... WITHDETAILS` and `SHIELD.inspect`.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::{Pair, Server, ServerOptions, ShieldCommands};

#[test]
fn withdetails_reports_decision_left_retry_and_reset() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    // 1 token per second; a huge period would make timings trivial, so use
    // exact figures with a tolerance of the time spent between calls.
    let [admitted, left, retry, reset] = c.absorb_details("d", 10, 10, 4);
    assert_eq!((admitted, left, retry), (1, 6, 0));
    assert!((3_990..=4_000).contains(&reset), "reset {reset}");
    let [admitted, left, retry, reset] = c.absorb_details("d", 10, 10, 8);
    assert_eq!((admitted, left), (0, 6));
    assert!((1_900..=2_000).contains(&retry), "retry {retry}");
    assert!((3_900..=4_000).contains(&reset), "reset {reset}");
    // More than the capacity: never.
    let [admitted, _, retry, _] = c.absorb_details("d", 10, 10, 11);
    assert_eq!((admitted, retry), (0, -1));
    // The plain form is unchanged.
    assert_eq!(c.absorb("d", 10, 10, Some(6)), 0);
    // WITHDETAILS without tokens takes one.
    let v: Vec<i64> = redis::cmd("SHIELD.absorb")
        .arg("d2")
        .arg(5)
        .arg(60)
        .arg("WITHDETAILS")
        .query(&mut c)
        .unwrap();
    assert_eq!(v[..3], [1, 4, 0]);
}

#[test]
fn waiting_exactly_retry_after_is_admitted() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    // 3 tokens per second: drained, a token every 333.33 ms.
    assert_eq!(c.absorb("r", 3, 1, Some(3)), 0);
    let [admitted, _, retry, _] = c.absorb_details("r", 3, 1, 1);
    assert_eq!(admitted, 0);
    assert!((1..=334).contains(&retry), "retry {retry}");
    std::thread::sleep(std::time::Duration::from_millis(retry as u64));
    assert_eq!(c.absorb_details("r", 3, 1, 1)[0], 1);
}

#[test]
fn inspect_reports_without_changing_anything() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    // A missing key is a full bucket, and inspecting does not create it.
    assert_eq!(c.inspect("i", 10, 10), [10, 10, 0, 0]);
    let exists: i64 = redis::cmd("EXISTS").arg("i").query(&mut c).unwrap();
    assert_eq!(exists, 0);

    assert_eq!(c.absorb("i", 10, 10, Some(4)), 6);
    let before = c.stored("i");
    assert!(before.0.is_some(), "no bucket stored");
    let [available, capacity, next, full] = c.inspect("i", 10, 10);
    assert_eq!((available, capacity), (6, 10));
    assert!((900..=1_000).contains(&next), "next {next}");
    assert!((3_900..=4_000).contains(&full), "full {full}");
    // Nothing changed: value, expiry, and what absorb can take.
    assert_eq!(c.stored("i"), before);
    assert_eq!(c.absorb("i", 10, 10, Some(6)), 0);
    assert_eq!(c.inspect("i", 10, 10)[0], 0);
}

#[test]
fn inspect_errors_and_readonly_flag() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let err = |args: &[&str]| s.conn().command_err("SHIELD.inspect", args);
    assert!(err(&["k", "10"]).contains("wrong number of arguments"));
    assert!(err(&["k", "10", "10", "1"]).contains("wrong number of arguments"));
    assert_eq!(
        err(&["k", "0", "10"]),
        "ERR capacity is not a positive integer"
    );
    let _: () = redis::cmd("RPUSH").arg("l").arg(1).query(&mut c).unwrap();
    assert!(err(&["l", "1", "1"]).starts_with("WRONGTYPE"));
    let _: () = redis::cmd("SET").arg("s").arg("x").query(&mut c).unwrap();
    assert_eq!(
        err(&["s", "1", "1"]),
        "ERR the key holds a string that is not a redis-shield bucket"
    );
    let info = c.command_info("shield.inspect");
    let text = format!("{info:?}");
    assert!(text.contains("readonly") && text.contains("fast"), "{text}");
}

#[test]
fn inspect_works_on_a_replica() {
    let Pair { master, replica } = Pair::with_module();
    let mut m = master.conn();
    assert_eq!(m.absorb("rep", 100, 100_000, Some(30)), 70);
    assert_eq!(m.wait_replicas(1), 1);
    let mut r = replica.conn();
    assert_eq!(r.inspect("rep", 100, 100_000)[..2], [70, 100]);
    // A replica only answers read-only commands: absorb is refused there.
    let e = r.try_absorb("rep", 100, 100_000, None).unwrap_err();
    assert_eq!(e.code(), Some("READONLY"));
}
