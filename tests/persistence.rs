//! Buckets survive an AOF restart (and an AOF rewrite) exactly.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{absorb, Server, ServerOptions};

fn state(c: &mut redis::Connection, key: &str) -> (Option<String>, i64) {
    let value: Option<String> = redis::cmd("GET").arg(key).query(c).unwrap();
    let expire: i64 = redis::cmd("PEXPIRETIME").arg(key).query(c).unwrap();
    (value, expire)
}

#[test]
fn aof_restart_restores_buckets_exactly() {
    let mut s = Server::start(ServerOptions::default().appendonly(true));
    let mut c = s.conn();
    // Long periods: no noticeable refill across the restart.
    assert_eq!(absorb(&mut c, "p1", 100, 100_000, Some(60)), 40);
    assert_eq!(absorb(&mut c, "p2", 3, 70_000, Some(1)), 2);
    let before = (state(&mut c, "p1"), state(&mut c, "p2"));
    drop(c);

    s.restart();
    let mut c = s.conn();
    assert_eq!((state(&mut c, "p1"), state(&mut c, "p2")), before);
    // It continues from the restored state; it does not come back full.
    assert_eq!(absorb(&mut c, "p1", 100, 100_000, Some(40)), 0);
    assert_eq!(absorb(&mut c, "p1", 100, 100_000, Some(1)), -1);

    // After an AOF rewrite too.
    let _: () = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    common::wait_until(std::time::Duration::from_secs(20), "AOF rewrite", || {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        common::info_field(&info, "aof_rewrite_in_progress").as_deref() == Some("0")
            && common::info_field(&info, "aof_rewrite_scheduled").as_deref() == Some("0")
    });
    let before = (state(&mut c, "p1"), state(&mut c, "p2"));
    drop(c);
    s.restart();
    let mut c = s.conn();
    assert_eq!((state(&mut c, "p1"), state(&mut c, "p2")), before);
    assert_eq!(absorb(&mut c, "p2", 3, 70_000, Some(2)), 0);
}
