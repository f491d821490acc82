//! A master with two replicas, one of them without the module: both must end
//! with byte-identical values and identical absolute expiries.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::{info_field, Pair, Server, ServerOptions, ShieldCommands};

fn repl_offset(c: &mut redis::Connection) -> i64 {
    info_field(&c.info_section("replication"), "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .expect("offset")
}

#[test]
fn replicas_hold_the_same_value_and_absolute_expiry() {
    let Pair {
        master,
        replica: with_module,
    } = Pair::with_module();
    let without_module = Server::start_replica(&master, ServerOptions::default().without_module());
    let mut m = master.conn();

    let keys = ["a", "b", "frac", "{tag}x", "legacy"];
    let _: () = redis::cmd("SET")
        .arg("legacy")
        .arg(7)
        .arg("EX")
        .arg(60)
        .query(&mut m)
        .unwrap();
    assert_eq!(m.absorb("a", 30, 60, Some(13)), 17);
    assert_eq!(m.absorb("a", 30, 60, Some(13)), 4);
    assert_eq!(m.absorb("b", 5, 1, None), 4);
    assert_eq!(m.absorb("frac", 3, 7, Some(2)), 1);
    assert_eq!(m.absorb("{tag}x", 1_000_000, 3_600, Some(999)), 999_001);
    assert_eq!(m.absorb("legacy", 10, 60, Some(2)), 5);

    assert_eq!(m.wait_replicas(2), 2);
    for key in keys {
        let on_master = m.stored(key);
        assert!(on_master.0.is_some(), "{key} missing on master");
        assert!(on_master.1 > 0, "{key} has no expiry on master");
        for replica in [&with_module, &without_module] {
            let mut r = replica.conn();
            assert_eq!(
                r.stored(key),
                on_master,
                "{key} on replica :{}",
                replica.port()
            );
        }
    }

    // A denied call writes and replicates nothing.
    let before = repl_offset(&mut m);
    assert_eq!(m.absorb("a", 30, 60, Some(13)), -1);
    assert_eq!(m.absorb("nokey", 3, 60, Some(4)), -1);
    assert_eq!(repl_offset(&mut m), before);
}

#[test]
fn replica_rejects_writes_from_clients() {
    let Pair {
        master: _master,
        replica,
    } = Pair::with_module();
    let mut r = replica.conn();
    let err = r.try_absorb("k", 1, 1, None).unwrap_err();
    assert_eq!(err.code(), Some("READONLY"), "{err}");
}
