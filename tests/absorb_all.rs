//! `SHIELD.absorball`: all buckets or none, atomically replicated; through
//! both engines (the module's command, and `FCALL shield_absorball` of the
//! Functions library on servers without the module).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::functions::{error_of, getkeys, Engine};
use shield_testkit::{engine_tests, read_aof_when, Pair, ServerOptions, ShieldCommands};

engine_tests!(
    charges_every_bucket_or_none,
    retry_after_is_when_every_bucket_admits,
    errors_and_key_specs,
    replicated_and_persisted_as_one_atomic_unit,
);

/// `SHIELD.absorball args...` (the module's flat argument list, as the
/// engine takes it), expecting an error: `CODE detail`.
fn err(engine: Engine, c: &mut redis::Connection, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    error_of(c, &engine.absorb_all_args_cmd(&args))
}

fn charges_every_bucket_or_none(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    let day = 1_000_000_000; // no refill during the test
    let limits = [("{u1}:api", 10, day, 3), ("{u1}:ip", 4, day, 3)];
    assert_eq!(
        engine.absorb_all(&mut c, &limits),
        (1, 0, vec![7, 1], vec![]),
        "{engine}"
    );
    // {u1}:ip has 1 left: the whole call is denied, {u1}:api is not charged.
    let (admitted, retry, remaining, short) = engine.absorb_all(&mut c, &limits);
    assert_eq!(
        (admitted, remaining, short),
        (0, vec![7, 1], vec!["{u1}:ip".to_string()]),
        "{engine}"
    );
    assert!(retry > 0, "{engine}: retry {retry}");
    assert_eq!(
        engine.absorb(&mut c, "{u1}:api", 10, day, Some(7)),
        0,
        "{engine}: api was not charged"
    );
    // One bucket asking for more than its capacity: never.
    let (admitted, retry, _, short) =
        engine.absorb_all(&mut c, &[("a", 5, 60, 1), ("b", 5, 60, 6)]);
    assert_eq!(
        (admitted, retry, short),
        (0, -1, vec!["b".to_string()]),
        "{engine}"
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0, "{engine}: a denied call wrote something");
}

fn retry_after_is_when_every_bucket_admits(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    // x: 5 per second (a token every 200 ms); y: 2 per second (every 500 ms).
    let drained = engine.absorb_all(&mut c, &[("x", 5, 1, 5), ("y", 2, 1, 2)]);
    assert_eq!(drained.0, 1, "{engine}");
    let (admitted, retry, _, short) = engine.absorb_all(&mut c, &[("x", 5, 1, 1), ("y", 2, 1, 1)]);
    assert_eq!(admitted, 0, "{engine}");
    assert_eq!(short, vec!["x".to_string(), "y".to_string()], "{engine}");
    assert!(
        (400..=500).contains(&retry),
        "{engine}: retry {retry}: y's token is the later one"
    );
    // Waiting exactly the answered retry-after is the case under test.
    std::thread::sleep(std::time::Duration::from_millis(retry as u64));
    assert_eq!(
        engine
            .absorb_all(&mut c, &[("x", 5, 1, 1), ("y", 2, 1, 1)])
            .0,
        1,
        "{engine}"
    );
}

fn errors_and_key_specs(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    for args in [
        &[][..],
        &["k"],
        &["k", "1", "1"],
        &["k", "1", "1", "1", "j"],
    ] {
        assert!(
            err(engine, &mut c, args).contains("wrong number of arguments"),
            "{engine} {args:?}"
        );
    }
    assert_eq!(
        err(engine, &mut c, &["k", "1", "1", "1", "j", "0", "1", "1"]),
        "ERR capacity is not a positive integer",
        "{engine}"
    );
    assert_eq!(
        err(engine, &mut c, &["k", "1", "1", "1", "k", "2", "2", "1"]),
        "ERR the same key appears more than once in one call",
        "{engine}"
    );
    let mut many = Vec::new();
    let names: Vec<String> = (0..33).map(|i| format!("k{i}")).collect();
    for n in &names {
        many.extend([n.as_str(), "1", "1", "1"]);
    }
    assert_eq!(
        err(engine, &mut c, &many),
        "ERR too many buckets: at most 32 per call",
        "{engine}"
    );
    let thirty_two: Vec<(&str, u64, u64, u64)> =
        names[..32].iter().map(|n| (n.as_str(), 1, 1, 1)).collect();
    let (admitted, _, remaining, _) = engine.absorb_all(&mut c, &thirty_two);
    assert_eq!((admitted, remaining.len()), (1, 32), "{engine}");
    let _: () = redis::cmd("RPUSH")
        .arg("list")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert!(
        err(engine, &mut c, &["z", "1", "1", "1", "list", "1", "1", "1"]).starts_with("WRONGTYPE"),
        "{engine}"
    );
    let exists: i64 = redis::cmd("EXISTS").arg("z").query(&mut c).unwrap();
    assert_eq!(exists, 0, "{engine}");
    // Every key is found by the server (the module's key specs, the
    // library's declared keys).
    let call = engine.absorb_all_args_cmd(&[
        b"a", b"1", b"1", b"1", b"b", b"2", b"2", b"2", b"c", b"3", b"3", b"3",
    ]);
    assert_eq!(getkeys(&mut c, &call), ["a", "b", "c"], "{engine}");
}

fn replicated_and_persisted_as_one_atomic_unit(engine: Engine) {
    let Pair { master, replica } = engine.start_pair_with(
        ServerOptions::default().appendonly(true),
        ServerOptions::default().without_module(),
    );
    let mut m = master.conn();
    let limits = [("{t}:a", 10, 3_600, 2), ("{t}:b", 3, 7, 1)];
    assert_eq!(engine.absorb_all(&mut m, &limits).0, 1, "{engine}");
    assert_eq!(m.wait_replicas(1), 1, "{engine}");
    let mut r = replica.conn();
    for (key, ..) in limits {
        let on_master = m.stored(key);
        assert!(
            on_master.0.is_some(),
            "{engine}: {key} missing on the master"
        );
        assert_eq!(on_master, r.stored(key), "{engine}: {key}");
    }
    // The AOF holds the two writes inside MULTI/EXEC.
    let aof = read_aof_when(&master, |aof| {
        aof.rfind("EXEC")
            .is_some_and(|exec| aof.rfind("{t}:b").is_some_and(|b| b < exec))
    });
    let multi = aof.rfind("MULTI").expect("MULTI in the AOF");
    let a = aof.rfind("{t}:a").expect("first key in the AOF");
    let b = aof.rfind("{t}:b").expect("second key in the AOF");
    let exec = aof.rfind("EXEC").expect("EXEC in the AOF");
    assert!(multi < a && a < b && b < exec, "{engine}: {aof}");
}
