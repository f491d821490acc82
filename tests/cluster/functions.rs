//! The Functions library (`functions/shield.lua`) on the cluster: loaded
//! into every master by `scripts/load-functions.sh`, routed by its declared
//! keys, byte-identical to the module's buckets, `FCALL_RO` on replicas.
//! And on a cluster whose nodes do not load the module: the hash-tagged
//! multi-bucket call routed by the cluster client, a cross-slot call
//! rejected without a write, and a SIGKILL failover that keeps every
//! bucket's state.

use std::process::Command;
use std::time::Duration;

use redis::Value;
use serial_test::serial;
use shield_testkit::cluster::redis_cli;
use shield_testkit::functions::{error_of, load_library, Engine};
use shield_testkit::{repo_root, wait_until, Cluster, ClusterOptions, ShieldCommands};

use crate::{dbsize, module_listed, two_keys_in_one_slot, NO_REFILL};

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

/// A cluster of our own whose six nodes do not load the module, with the
/// library loaded into every master (`FUNCTION LOAD`) and replicated to
/// every replica.
fn cluster_without_the_module(why: &str) -> Cluster {
    let cluster = Cluster::own_with(
        why,
        ClusterOptions {
            without_module: true,
            ..ClusterOptions::default()
        },
    );
    for m in cluster.masters() {
        load_library(&mut cluster.conn_to(&m));
    }
    for node in cluster.topology() {
        let mut c = cluster.conn_to(&node);
        let (listed, words) = module_listed(&mut c);
        assert!(
            !listed,
            "the module is loaded on {}: {words:?}",
            node.addr()
        );
        wait_until(
            Duration::from_secs(10),
            &format!("the library on {}", node.addr()),
            || has_library(&mut c),
        );
    }
    cluster
}

#[test]
#[serial]
fn library_without_the_module_absorball_in_one_slot_routes_and_cross_slot_writes_nothing() {
    let cluster = cluster_without_the_module("starts its nodes without the module");
    let lib = Engine::Library;
    let (api, ip, slot) = two_keys_in_one_slot(&cluster, "user:11", "api", "ip");
    let burst = cluster.key("{user:11}:burst");
    assert_eq!(cluster.server_keyslot(&burst), slot);
    let limits = [
        (api.as_str(), 10, NO_REFILL, 3),
        (ip.as_str(), 4, NO_REFILL, 3),
        (burst.as_str(), 3, 7_000_000, 1),
    ];

    // Through the cluster client, which routes FCALL by its declared keys.
    let mut cc = cluster.conn();
    assert_eq!(
        lib.absorb_all(&mut cc, &limits),
        (1, 0, vec![7, 1, 2], vec![])
    );
    let (admitted, retry, left, short) = lib.absorb_all(&mut cc, &limits);
    assert_eq!(
        (admitted, left, short),
        (0, vec![7, 1, 2], vec![ip.clone()])
    );
    assert!(retry > 0, "retry {retry}");
    assert_eq!(
        lib.absorb(&mut cc, &api, 10, NO_REFILL, None),
        6,
        "api was not charged by the denied call"
    );
    // The slot's owner holds the three buckets (one with a remainder), and
    // its replica the same bytes and expiries.
    let owner = cluster.owner_of_slot(slot);
    let mut oc = cluster.conn_to(&owner);
    assert_eq!(oc.wait_replicas(1), 1);
    let states: Vec<_> = [&api, &ip, &burst].iter().map(|k| oc.stored(k)).collect();
    assert_eq!(states[2].0.as_deref(), Some(&b"~2/3"[..]), "{burst}");
    for replica in cluster.replicas_of(&owner.id) {
        let mut rc = cluster.replica_conn(&replica);
        let on_replica: Vec<_> = [&api, &ip, &burst].iter().map(|k| rc.stored(k)).collect();
        assert_eq!(on_replica, states, "on the replica {}", replica.addr());
    }
    // The other masters redirect the call to the owner and write nothing.
    for m in cluster.masters().iter().filter(|m| m.id != owner.id) {
        let mut mc = cluster.conn_to(m);
        let keys = dbsize(&mut mc);
        let err = lib.try_absorb_all(&mut mc, &limits).unwrap_err();
        assert_eq!(
            err.redirect_node(),
            Some((owner.addr().as_str(), slot)),
            "{err}"
        );
        assert_eq!(dbsize(&mut mc), keys, "{} wrote a key", m.addr());
    }

    // Keys of two slots: CROSSSLOT, from the cluster client and from the
    // first key's owner, and no bucket is created anywhere.
    let (a, b) = (cluster.key("fcross:a"), cluster.key("fcross:b"));
    let (slot_a, slot_b) = (cluster.server_keyslot(&a), cluster.server_keyslot(&b));
    assert_ne!(slot_a, slot_b);
    let before: Vec<u64> = cluster
        .masters()
        .iter()
        .map(|m| dbsize(&mut cluster.conn_to(m)))
        .collect();
    let cross = [(a.as_str(), 5, NO_REFILL, 1), (b.as_str(), 5, NO_REFILL, 1)];
    let err = lib.try_absorb_all(&mut cc, &cross).unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    let mut ac = cluster.conn_to(&cluster.owner_of_slot(slot_a));
    let err = lib.try_absorb_all(&mut ac, &cross).unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    // Each key asked of its own slot's master: a redirect would hide a write.
    for (k, s) in [(&a, slot_a), (&b, slot_b)] {
        let owner = cluster.owner_of_slot(s);
        let exists: i64 = redis::cmd("EXISTS")
            .arg(k)
            .query(&mut cluster.conn_to(&owner))
            .unwrap();
        assert_eq!(exists, 0, "{k} was written on {}", owner.addr());
    }
    let after: Vec<u64> = cluster
        .masters()
        .iter()
        .map(|m| dbsize(&mut cluster.conn_to(m)))
        .collect();
    assert_eq!(after, before, "keys per master");
}

#[test]
#[serial]
fn library_buckets_survive_a_sigkill_failover_without_the_module() {
    let mut cluster =
        cluster_without_the_module("starts its nodes without the module and SIGKILLs a master");
    let lib = Engine::Library;
    let (one, two, slot) = two_keys_in_one_slot(&cluster, "lf", "one", "two");
    let three = cluster.key("{lf}:three");
    assert_eq!(cluster.server_keyslot(&three), slot);
    // A bucket drained to half by single calls; three by one multi-bucket
    // call, one of them with a remainder and a finite expiry (3 tokens per
    // 81 days: a token every 2 333 333 333 1/3 ms).
    let mut cc = cluster.conn();
    for left in (50..100).rev() {
        assert_eq!(lib.absorb(&mut cc, &one, 100, NO_REFILL, None), left);
    }
    let limits = [
        (two.as_str(), 50, NO_REFILL, 25),
        (three.as_str(), 3, 7_000_000, 1),
    ];
    assert_eq!(
        lib.absorb_all(&mut cc, &limits),
        (1, 0, vec![25, 2], vec![])
    );
    let keys = [&one, &two, &three];
    let owner = cluster.owner_of_slot(slot);
    let mut oc = cluster.conn_to(&owner);
    let before: Vec<_> = keys.iter().map(|k| oc.stored(k)).collect();
    assert_eq!(before[2].0.as_deref(), Some(&b"~2/3"[..]), "{three}");
    assert!(before.iter().all(|s| s.1 > 0), "{before:?}");
    assert_eq!(oc.wait_replicas(1), 1, "WAIT 1 on {}", owner.addr());
    let replica = cluster
        .replicas_of(&owner.id)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("owner {} has no replica", owner.addr()));

    cluster.kill(&owner);
    cluster.wait_promoted(&replica, slot);
    assert_eq!(cluster.owner_of_slot(slot).id, replica.id);

    // The promoted replica holds the same values and absolute expiries...
    let mut pc = cluster.conn_to(&replica);
    let after: Vec<_> = keys.iter().map(|k| pc.stored(k)).collect();
    assert_eq!(after, before, "state on the promoted replica");
    // ... and the library there answers from that state, not a full bucket.
    let mut cc = cluster.conn();
    assert_eq!(lib.inspect(&mut cc, &one, 100, NO_REFILL)[..2], [50, 100]);
    assert_eq!(lib.inspect(&mut cc, &three, 3, 7_000_000)[..2], [2, 3]);
    assert_eq!(lib.absorb(&mut cc, &one, 100, NO_REFILL, None), 49);
    assert_eq!(lib.absorb_all(&mut cc, &limits), (1, 0, vec![0, 1], vec![]));
    let (admitted, retry, left, short) = lib.absorb_all(&mut cc, &limits);
    assert_eq!((admitted, left), (0, vec![0, 1]));
    assert_eq!(short, vec![two]);
    assert!(retry > 0, "retry {retry}");
}
