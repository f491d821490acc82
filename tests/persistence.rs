//! Buckets survive an AOF restart (and an AOF rewrite) exactly.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::{info_field, wait_until, Server, ServerOptions, ShieldCommands};

/// Restart `s` (it reloads its AOF) and check that buckets p1 and p2 are
/// stored exactly as before; returns a connection to the new process.
fn restart_keeps_both_buckets(s: &mut Server, mut c: redis::Connection) -> redis::Connection {
    let before = (c.stored("p1"), c.stored("p2"));
    drop(c);
    s.restart();
    let mut c = s.conn();
    assert_eq!((c.stored("p1"), c.stored("p2")), before);
    c
}

#[test]
fn aof_restart_restores_buckets_exactly() {
    let mut s = Server::start(ServerOptions::default().appendonly(true));
    let mut c = s.conn();
    // Long periods: no noticeable refill across the restart.
    assert_eq!(c.absorb("p1", 100, 100_000, Some(60)), 40);
    assert_eq!(c.absorb("p2", 3, 70_000, Some(1)), 2);
    let mut c = restart_keeps_both_buckets(&mut s, c);
    // It continues from the restored state; it does not come back full.
    assert_eq!(c.absorb("p1", 100, 100_000, Some(40)), 0);
    assert_eq!(c.absorb("p1", 100, 100_000, Some(1)), -1);

    // After an AOF rewrite too.
    let _: () = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    wait_until(std::time::Duration::from_secs(20), "AOF rewrite", || {
        let info = c.info_section("persistence");
        info_field(&info, "aof_rewrite_in_progress").as_deref() == Some("0")
            && info_field(&info, "aof_rewrite_scheduled").as_deref() == Some("0")
    });
    let mut c = restart_keeps_both_buckets(&mut s, c);
    assert_eq!(c.absorb("p2", 3, 70_000, Some(2)), 0);
}
