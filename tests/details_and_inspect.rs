//! `SHIELD.absorb ... WITHDETAILS` and `SHIELD.inspect`, through both
//! engines (the module's commands; `FCALL shield_absorb ... WITHDETAILS` and
//! `FCALL_RO shield_inspect` of the Functions library on servers without
//! the module).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use redis::Value;
use shield_testkit::functions::{error_of, Engine};
use shield_testkit::{engine_tests, Pair, ShieldCommands};

engine_tests!(
    withdetails_reports_decision_left_retry_and_reset,
    waiting_exactly_retry_after_is_admitted,
    inspect_reports_without_changing_anything,
    inspect_errors,
    inspect_is_declared_read_only,
    inspect_works_on_a_replica,
);

fn withdetails_reports_decision_left_retry_and_reset(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    // 1 token per second; a huge period would make timings trivial, so use
    // exact figures with a tolerance of the time spent between calls.
    let [admitted, left, retry, reset] = engine.absorb_details(&mut c, "d", 10, 10, 4);
    assert_eq!((admitted, left, retry), (1, 6, 0), "{engine}");
    assert!((3_990..=4_000).contains(&reset), "{engine}: reset {reset}");
    let [admitted, left, retry, reset] = engine.absorb_details(&mut c, "d", 10, 10, 8);
    assert_eq!((admitted, left), (0, 6), "{engine}");
    assert!((1_900..=2_000).contains(&retry), "{engine}: retry {retry}");
    assert!((3_900..=4_000).contains(&reset), "{engine}: reset {reset}");
    // More than the capacity: never.
    let [admitted, _, retry, _] = engine.absorb_details(&mut c, "d", 10, 10, 11);
    assert_eq!((admitted, retry), (0, -1), "{engine}");
    // The plain form is unchanged.
    assert_eq!(engine.absorb(&mut c, "d", 10, 10, Some(6)), 0, "{engine}");
    // WITHDETAILS without tokens takes one.
    let v: Vec<i64> = engine
        .absorb_cmd(b"d2", &[b"5", b"60", b"WITHDETAILS"])
        .query(&mut c)
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    assert_eq!(v[..3], [1, 4, 0], "{engine}");
}

fn waiting_exactly_retry_after_is_admitted(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    // 3 tokens per second: drained, a token every 333.33 ms.
    assert_eq!(engine.absorb(&mut c, "r", 3, 1, Some(3)), 0, "{engine}");
    let [admitted, _, retry, _] = engine.absorb_details(&mut c, "r", 3, 1, 1);
    assert_eq!(admitted, 0, "{engine}");
    assert!((1..=334).contains(&retry), "{engine}: retry {retry}");
    // Waiting exactly the answered retry-after is the case under test.
    std::thread::sleep(std::time::Duration::from_millis(retry as u64));
    assert_eq!(
        engine.absorb_details(&mut c, "r", 3, 1, 1)[0],
        1,
        "{engine}"
    );
}

fn inspect_reports_without_changing_anything(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    // A missing key is a full bucket, and inspecting does not create it.
    assert_eq!(
        engine.inspect(&mut c, "i", 10, 10),
        [10, 10, 0, 0],
        "{engine}"
    );
    let exists: i64 = redis::cmd("EXISTS").arg("i").query(&mut c).unwrap();
    assert_eq!(exists, 0, "{engine}");

    assert_eq!(engine.absorb(&mut c, "i", 10, 10, Some(4)), 6, "{engine}");
    let before = c.stored("i");
    assert!(before.0.is_some(), "{engine}: no bucket stored");
    let [available, capacity, next, full] = engine.inspect(&mut c, "i", 10, 10);
    assert_eq!((available, capacity), (6, 10), "{engine}");
    assert!((900..=1_000).contains(&next), "{engine}: next {next}");
    assert!((3_900..=4_000).contains(&full), "{engine}: full {full}");
    // Nothing changed: value, expiry, and what absorb can take.
    assert_eq!(c.stored("i"), before, "{engine}");
    assert_eq!(engine.absorb(&mut c, "i", 10, 10, Some(6)), 0, "{engine}");
    assert_eq!(engine.inspect(&mut c, "i", 10, 10)[0], 0, "{engine}");
}

fn inspect_errors(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    let err = |args: &[&[u8]]| error_of(&mut s.conn(), &engine.inspect_args_cmd(args));
    assert!(
        err(&[b"k", b"10"]).contains("wrong number of arguments"),
        "{engine}"
    );
    assert!(
        err(&[b"k", b"10", b"10", b"1"]).contains("wrong number of arguments"),
        "{engine}"
    );
    assert_eq!(
        err(&[b"k", b"0", b"10"]),
        "ERR capacity is not a positive integer",
        "{engine}"
    );
    let _: () = redis::cmd("RPUSH").arg("l").arg(1).query(&mut c).unwrap();
    assert!(
        err(&[b"l", b"1", b"1"]).starts_with("WRONGTYPE"),
        "{engine}"
    );
    let _: () = redis::cmd("SET").arg("s").arg("x").query(&mut c).unwrap();
    assert_eq!(
        err(&[b"s", b"1", b"1"]),
        "ERR the key holds a string that is not a redis-shield bucket",
        "{engine}"
    );
}

/// Inspect is declared read-only, each engine in its own way: the module's
/// command is flagged `readonly` (and `fast`), the library's function
/// `no-writes` (so `FCALL_RO` takes it).
fn inspect_is_declared_read_only(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    let text = match engine {
        Engine::Module => format!("{:?}", c.command_info("shield.inspect")),
        Engine::Library => {
            let libs: Value = redis::cmd("FUNCTION")
                .arg(&["LIST", "LIBRARYNAME", "shield"])
                .query(&mut c)
                .unwrap();
            let text = format!("{libs:?}");
            let at = text.find("shield_inspect").expect("shield_inspect listed");
            // The function's entry: its name, then its description and flags.
            let end = text[at..]
                .find("shield_absorb")
                .map_or(text.len(), |i| at + i);
            text[at..end].to_string()
        }
    };
    let flags: &[&str] = match engine {
        Engine::Module => &["readonly", "fast"],
        Engine::Library => &["no-writes"],
    };
    for flag in flags {
        assert!(text.contains(flag), "{engine}: {flag} missing in {text}");
    }
}

fn inspect_works_on_a_replica(engine: Engine) {
    // Both servers of this engine only: with the module, or without it (the
    // library replicated from the master).
    let Pair { master, replica } = engine.start_pair();
    let mut m = master.conn();
    assert_eq!(
        engine.absorb(&mut m, "rep", 100, 100_000, Some(30)),
        70,
        "{engine}"
    );
    assert_eq!(m.wait_replicas(1), 1, "{engine}");
    let mut r = replica.conn();
    assert_eq!(
        engine.inspect(&mut r, "rep", 100, 100_000)[..2],
        [70, 100],
        "{engine}"
    );
    // A replica only answers read-only commands: absorb is refused there.
    let e = engine
        .try_absorb(&mut r, "rep", 100, 100_000, None)
        .unwrap_err();
    assert_eq!(e.code(), Some("READONLY"), "{engine}: {e}");
}
