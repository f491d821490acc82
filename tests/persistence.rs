//! Buckets survive an AOF restart (and an AOF rewrite) exactly, through both
//! engines: the module, and the Functions library on a server without the
//! module (the server persists the library itself, and the AOF holds the
//! `SET ... PXAT` effects of both).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::functions::Engine;
use shield_testkit::{
    engine_tests, info_field, read_aof_when, wait_until, Server, ServerOptions, ShieldCommands,
};

engine_tests!(aof_restart_restores_buckets_exactly);

/// Restart `s` (it reloads its AOF) and check that buckets p1 and p2 are
/// stored exactly as before; returns a connection to the new process.
fn restart_keeps_both_buckets(
    engine: Engine,
    s: &mut Server,
    mut c: redis::Connection,
) -> redis::Connection {
    let before = (c.stored("p1"), c.stored("p2"));
    drop(c);
    s.restart();
    let mut c = s.conn();
    assert_eq!((c.stored("p1"), c.stored("p2")), before, "{engine}");
    c
}

/// `SET key value PXAT ms` as the AOF holds it (RESP), from a key's stored
/// state.
fn aof_set(key: &str, (value, expire): &(Option<Vec<u8>>, i64)) -> String {
    let value = String::from_utf8(value.clone().expect("a stored value")).unwrap();
    let expire = expire.to_string();
    let mut resp = String::from("*5\r\n$3\r\nSET\r\n");
    for arg in [key, &value, "PXAT", &expire] {
        resp += &format!("${}\r\n{arg}\r\n", arg.len());
    }
    resp
}

fn aof_restart_restores_buckets_exactly(engine: Engine) {
    let mut s = engine.start(ServerOptions::default().appendonly(true));
    let mut c = s.conn();
    // Long periods: no noticeable refill across the restart.
    assert_eq!(
        engine.absorb(&mut c, "p1", 100, 100_000, Some(60)),
        40,
        "{engine}"
    );
    assert_eq!(
        engine.absorb(&mut c, "p2", 3, 70_000, Some(1)),
        2,
        "{engine}"
    );
    // The AOF holds the effects: the exact SET ... PXAT of each bucket.
    let sets: Vec<String> = ["p1", "p2"]
        .into_iter()
        .map(|key| aof_set(key, &c.stored(key)))
        .collect();
    let aof = read_aof_when(&s, |aof| sets.iter().all(|set| aof.contains(set.as_str())));
    for set in &sets {
        assert!(
            aof.contains(set.as_str()),
            "{engine}: {set:?} not in the AOF:\n{aof}"
        );
    }
    let mut c = restart_keeps_both_buckets(engine, &mut s, c);
    // It continues from the restored state; it does not come back full.
    assert_eq!(
        engine.absorb(&mut c, "p1", 100, 100_000, Some(40)),
        0,
        "{engine}"
    );
    assert_eq!(
        engine.absorb(&mut c, "p1", 100, 100_000, Some(1)),
        -1,
        "{engine}"
    );

    // After an AOF rewrite too.
    let _: () = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    wait_until(std::time::Duration::from_secs(20), "AOF rewrite", || {
        let info = c.info_section("persistence");
        info_field(&info, "aof_rewrite_in_progress").as_deref() == Some("0")
            && info_field(&info, "aof_rewrite_scheduled").as_deref() == Some("0")
    });
    let mut c = restart_keeps_both_buckets(engine, &mut s, c);
    assert_eq!(
        engine.absorb(&mut c, "p2", 3, 70_000, Some(2)),
        0,
        "{engine}"
    );
}
