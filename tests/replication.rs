//! A master with two replicas, one with the module and one without: both
//! must end with byte-identical values and identical absolute expiries,
//! whichever engine wrote them on the master (the module, or the Functions
//! library on a master without the module).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::functions::Engine;
use shield_testkit::{engine_tests, info_field, Pair, Server, ServerOptions, ShieldCommands};

engine_tests!(
    replicas_hold_the_same_value_and_absolute_expiry,
    replica_rejects_writes_from_clients,
);

fn repl_offset(c: &mut redis::Connection) -> i64 {
    info_field(&c.info_section("replication"), "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .expect("offset")
}

fn replicas_hold_the_same_value_and_absolute_expiry(engine: Engine) {
    let Pair {
        master,
        replica: with_module,
    } = engine.start_pair_with(ServerOptions::default(), ServerOptions::default());
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
    assert_eq!(engine.absorb(&mut m, "a", 30, 60, Some(13)), 17, "{engine}");
    assert_eq!(engine.absorb(&mut m, "a", 30, 60, Some(13)), 4, "{engine}");
    assert_eq!(engine.absorb(&mut m, "b", 5, 1, None), 4, "{engine}");
    assert_eq!(engine.absorb(&mut m, "frac", 3, 7, Some(2)), 1, "{engine}");
    assert_eq!(
        engine.absorb(&mut m, "{tag}x", 1_000_000, 3_600, Some(999)),
        999_001,
        "{engine}"
    );
    assert_eq!(
        engine.absorb(&mut m, "legacy", 10, 60, Some(2)),
        5,
        "{engine}"
    );

    assert_eq!(m.wait_replicas(2), 2, "{engine}");
    for key in keys {
        let on_master = m.stored(key);
        assert!(on_master.0.is_some(), "{engine}: {key} missing on master");
        assert!(on_master.1 > 0, "{engine}: {key} has no expiry on master");
        for (replica, what) in [(&with_module, "with"), (&without_module, "without")] {
            let mut r = replica.conn();
            assert_eq!(
                r.stored(key),
                on_master,
                "{engine}: {key} on the replica {what} the module"
            );
        }
    }

    // A denied call writes and replicates nothing.
    let before = repl_offset(&mut m);
    assert_eq!(engine.absorb(&mut m, "a", 30, 60, Some(13)), -1, "{engine}");
    assert_eq!(
        engine.absorb(&mut m, "nokey", 3, 60, Some(4)),
        -1,
        "{engine}"
    );
    assert_eq!(repl_offset(&mut m), before, "{engine}");
}

fn replica_rejects_writes_from_clients(engine: Engine) {
    let Pair {
        master: _master,
        replica,
    } = engine.start_pair();
    let mut r = replica.conn();
    let err = engine.try_absorb(&mut r, "k", 1, 1, None).unwrap_err();
    assert_eq!(err.code(), Some("READONLY"), "{engine}: {err}");
}
