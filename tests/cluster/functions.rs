//! The Functions library (`functions/shield.lua`) on the cluster: loaded
//! into every master by `scripts/load-functions.sh`, routed by its declared
//! keys, byte-identical to the module's buckets, `FCALL_RO` on replicas.

use std::process::Command;
use std::time::Duration;

use redis::Value;
use serial_test::serial;
use shield_testkit::cluster::redis_cli;
use shield_testkit::functions::{error_of, Engine};
use shield_testkit::{repo_root, wait_until, Cluster, ShieldCommands};

use crate::{two_keys_in_one_slot, NO_REFILL};

fn has_library(c: &mut redis::Connection) -> bool {
    let libs: Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("shield")
        .query(c)
        .unwrap();
    matches!(libs, Value::Array(ref l) if !l.is_empty())
}

#[test]
#[serial]
fn functions_library_loaded_by_the_script_routes_and_matches_the_module() {
    let cluster =
        Cluster::own("loads the Functions library into every node (FUNCTION LOAD REPLACE)");
    let seed = cluster.masters()[0].clone();
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/load-functions.sh"))
        .args(["-h", &seed.host, "-p", &seed.port.to_string()])
        .env("REDIS_CLI", redis_cli())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/load-functions.sh: {status}");
    // Every master got it from the script, every replica by replication.
    for node in cluster.topology() {
        let mut c = cluster.conn_to(&node);
        wait_until(
            Duration::from_secs(10),
            &format!("the library on {}", node.addr()),
            || has_library(&mut c),
        );
    }

    let (lib, module) = (Engine::Library, Engine::Module);
    let mut cc = cluster.conn();
    let far = {
        let mut c = cluster.conn_to(&seed);
        let (secs, _): (u64, u64) = redis::cmd("TIME").query(&mut c).unwrap();
        secs * 1000 + 500_000_000_000
    };
    // Keys on every master, routed by the cluster client from FCALL's
    // declared key; each next to a key of the same state driven by the module.
    for i in 0..12 {
        let (x, m, slot) = two_keys_in_one_slot(&cluster, &format!("fn{i}"), "lib", "mod");
        for key in [&x, &m] {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("~0")
                .arg("PXAT")
                .arg(far)
                .query(&mut cc)
                .unwrap();
        }
        assert_eq!(lib.absorb(&mut cc, &x, 100, NO_REFILL, Some(30)), 20);
        assert_eq!(module.absorb(&mut cc, &m, 100, NO_REFILL, Some(30)), 20);
        assert_eq!(cc.stored(&x), cc.stored(&m), "{x}");
        assert_eq!(lib.absorb(&mut cc, &m, 100, NO_REFILL, Some(25)), -1);
        assert_eq!(module.absorb(&mut cc, &x, 100, NO_REFILL, Some(20)), 0);
        assert_eq!(lib.absorb(&mut cc, &m, 100, NO_REFILL, Some(20)), 0);
        assert_eq!(cc.stored(&x), cc.stored(&m), "{x}");

        let owner = cluster.owner_of_slot(slot);
        let mut oc = cluster.conn_to(&owner);
        assert_eq!(oc.wait_replicas(1), 1);
        // FCALL_RO on a READONLY replica, byte-identical state there.
        for replica in cluster.replicas_of(&owner.id) {
            let mut rc = cluster.replica_conn(&replica);
            assert_eq!(lib.inspect(&mut rc, &x, 100, NO_REFILL)[..2], [0, 100]);
            assert_eq!(rc.stored(&x), oc.stored(&x), "{x} on {}", replica.addr());
        }
        // The other masters redirect.
        for other in cluster.masters().iter().filter(|n| n.id != owner.id) {
            let err = error_of(
                &mut cluster.conn_to(other),
                &lib.absorb_cmd(x.as_bytes(), &[b"100", b"1"]),
            );
            assert!(err.starts_with("MOVED"), "{err}");
        }
    }

    // Absorball: one slot, all or nothing; keys of two slots: CROSSSLOT.
    let (api, ip, slot) = two_keys_in_one_slot(&cluster, "user:9", "api", "ip");
    let limits = [
        (api.as_str(), 10, NO_REFILL, 3),
        (ip.as_str(), 4, NO_REFILL, 3),
    ];
    assert_eq!(lib.absorb_all(&mut cc, &limits), (1, 0, vec![7, 1], vec![]));
    let (admitted, _, left, short) = lib.absorb_all(&mut cc, &limits);
    assert_eq!((admitted, left, short), (0, vec![7, 1], vec![ip.clone()]));
    assert_eq!(module.absorb(&mut cc, &api, 10, NO_REFILL, None), 6);
    let (a, b) = (cluster.key("fcross:a"), cluster.key("fcross:b"));
    assert_ne!(cluster.server_keyslot(&a), cluster.server_keyslot(&b));
    let mut oc = cluster.conn_to(&cluster.owner_of_slot(slot));
    let err = error_of(
        &mut oc,
        &lib.absorb_all_cmd(&[
            (a.as_bytes(), [b"1", b"1", b"1"]),
            (b.as_bytes(), [b"1", b"1", b"1"]),
        ]),
    );
    assert!(err.starts_with("CROSSSLOT"), "{err}");
}
