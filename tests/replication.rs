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

mod common;

use common::{absorb, info_field, stored, wait_for_replication, Server, ServerOptions};

fn repl_offset(c: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("replication").query(c).unwrap();
    info_field(&info, "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .expect("offset")
}

#[test]
fn replicas_hold_the_same_value_and_absolute_expiry() {
    let master = Server::start(ServerOptions::default());
    let with_module = Server::start(ServerOptions::default().replica_of(master.port()));
    let without_module = Server::start(
        ServerOptions::default()
            .without_module()
            .replica_of(master.port()),
    );
    wait_for_replication(&master, &with_module);
    wait_for_replication(&master, &without_module);
    let mut m = master.conn();

    let keys = ["a", "b", "frac", "{tag}x", "legacy"];
    let _: () = redis::cmd("SET")
        .arg("legacy")
        .arg(7)
        .arg("EX")
        .arg(60)
        .query(&mut m)
        .unwrap();
    assert_eq!(absorb(&mut m, "a", 30, 60, Some(13)), 17);
    assert_eq!(absorb(&mut m, "a", 30, 60, Some(13)), 4);
    assert_eq!(absorb(&mut m, "b", 5, 1, None), 4);
    assert_eq!(absorb(&mut m, "frac", 3, 7, Some(2)), 1);
    assert_eq!(
        absorb(&mut m, "{tag}x", 1_000_000, 3_600, Some(999)),
        999_001
    );
    assert_eq!(absorb(&mut m, "legacy", 10, 60, Some(2)), 5);

    let acked: i64 = redis::cmd("WAIT").arg(2).arg(5_000).query(&mut m).unwrap();
    assert_eq!(acked, 2);
    for key in keys {
        let on_master = stored(&mut m, key);
        assert!(on_master.0.is_some(), "{key} missing on master");
        assert!(on_master.1 > 0, "{key} has no expiry on master");
        for replica in [&with_module, &without_module] {
            let mut r = replica.conn();
            assert_eq!(
                stored(&mut r, key),
                on_master,
                "{key} on replica :{}",
                replica.port()
            );
        }
    }

    // A denied call writes and replicates nothing.
    let before = repl_offset(&mut m);
    assert_eq!(absorb(&mut m, "a", 30, 60, Some(13)), -1);
    assert_eq!(absorb(&mut m, "nokey", 3, 60, Some(4)), -1);
    assert_eq!(repl_offset(&mut m), before);
}

#[test]
fn replica_rejects_writes_from_clients() {
    let master = Server::start(ServerOptions::default());
    let replica = Server::start(ServerOptions::default().replica_of(master.port()));
    wait_for_replication(&master, &replica);
    let mut r = replica.conn();
    let err = redis::cmd("SHIELD.absorb")
        .arg("k")
        .arg(1)
        .arg(1)
        .query::<i64>(&mut r)
        .unwrap_err();
    assert_eq!(err.code(), Some("READONLY"), "{err}");
}
