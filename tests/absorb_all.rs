//! `SHIELD.absorball`: all buckets or none, atomically replicated.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::{read_aof, AbsorbAllReply, Pair, Server, ServerOptions, ShieldCommands};

/// `SHIELD.absorball args...`, expecting an error: `CODE detail`.
fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    c.command_err("SHIELD.absorball", args)
}

#[test]
fn charges_every_bucket_or_none() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let day = 1_000_000_000; // no refill during the test
    let limits = [("{u1}:api", 10, day, 3), ("{u1}:ip", 4, day, 3)];
    assert_eq!(c.absorb_all(&limits), (1, 0, vec![7, 1], vec![]));
    // {u1}:ip has 1 left: the whole call is denied, {u1}:api is not charged.
    let (admitted, retry, remaining, short) = c.absorb_all(&limits);
    assert_eq!(
        (admitted, remaining, short),
        (0, vec![7, 1], vec!["{u1}:ip".to_string()])
    );
    assert!(retry > 0, "retry {retry}");
    assert_eq!(
        c.absorb("{u1}:api", 10, day, Some(7)),
        0,
        "api was not charged"
    );
    // One bucket asking for more than its capacity: never.
    let (admitted, retry, _, short) = c.absorb_all(&[("a", 5, 60, 1), ("b", 5, 60, 6)]);
    assert_eq!((admitted, retry, short), (0, -1, vec!["b".to_string()]));
    let exists: i64 = redis::cmd("EXISTS")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0, "a denied call wrote something");
}

#[test]
fn retry_after_is_when_every_bucket_admits() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    // x: 5 per second (a token every 200 ms); y: 2 per second (every 500 ms).
    let drained = c.absorb_all(&[("x", 5, 1, 5), ("y", 2, 1, 2)]);
    assert_eq!(drained.0, 1);
    let (admitted, retry, _, short) = c.absorb_all(&[("x", 5, 1, 1), ("y", 2, 1, 1)]);
    assert_eq!(admitted, 0);
    assert_eq!(short, vec!["x".to_string(), "y".to_string()]);
    assert!(
        (400..=500).contains(&retry),
        "retry {retry}: y's token is the later one"
    );
    std::thread::sleep(std::time::Duration::from_millis(retry as u64));
    assert_eq!(c.absorb_all(&[("x", 5, 1, 1), ("y", 2, 1, 1)]).0, 1);
}

#[test]
fn errors_and_key_specs() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    for args in [
        &[][..],
        &["k"],
        &["k", "1", "1"],
        &["k", "1", "1", "1", "j"],
    ] {
        assert!(
            err(&mut c, args).contains("wrong number of arguments"),
            "{args:?}"
        );
    }
    assert_eq!(
        err(&mut c, &["k", "1", "1", "1", "j", "0", "1", "1"]),
        "ERR capacity is not a positive integer"
    );
    assert_eq!(
        err(&mut c, &["k", "1", "1", "1", "k", "2", "2", "1"]),
        "ERR the same key appears more than once in one call"
    );
    let mut many = Vec::new();
    let names: Vec<String> = (0..33).map(|i| format!("k{i}")).collect();
    for n in &names {
        many.extend([n.as_str(), "1", "1", "1"]);
    }
    assert_eq!(
        err(&mut c, &many),
        "ERR too many buckets: at most 32 per call"
    );
    let (admitted, _, remaining, _): AbsorbAllReply = redis::cmd("SHIELD.absorball")
        .arg(&many[..32 * 4])
        .query(&mut c)
        .unwrap();
    assert_eq!((admitted, remaining.len()), (1, 32));
    let _: () = redis::cmd("RPUSH")
        .arg("list")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert!(err(&mut c, &["z", "1", "1", "1", "list", "1", "1", "1"]).starts_with("WRONGTYPE"));
    let exists: i64 = redis::cmd("EXISTS").arg("z").query(&mut c).unwrap();
    assert_eq!(exists, 0);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("SHIELD.absorball")
        .arg(&["a", "1", "1", "1", "b", "2", "2", "2", "c", "3", "3", "3"][..])
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["a", "b", "c"]);
}

#[test]
fn replicated_and_persisted_as_one_atomic_unit() {
    let Pair { master, replica } = Pair::start(
        ServerOptions::default().appendonly(true),
        ServerOptions::default().without_module(),
    );
    let mut m = master.conn();
    let limits = [("{t}:a", 10, 3_600, 2), ("{t}:b", 3, 7, 1)];
    assert_eq!(m.absorb_all(&limits).0, 1);
    assert_eq!(m.wait_replicas(1), 1);
    let mut r = replica.conn();
    for (key, ..) in limits {
        let on_master = m.stored(key);
        assert!(on_master.0.is_some(), "{key} missing on the master");
        assert_eq!(on_master, r.stored(key), "{key}");
    }
    // The AOF holds the two writes inside MULTI/EXEC.
    let aof = read_aof(&master);
    let multi = aof.find("MULTI").expect("MULTI in the AOF");
    let a = aof.find("{t}:a").expect("first key in the AOF");
    let b = aof.find("{t}:b").expect("second key in the AOF");
    let exec = aof.rfind("EXEC").expect("EXEC in the AOF");
    assert!(multi < a && a < b && b < exec, "{aof}");
}
