//! `SHIELD.absorball` on the cluster: one slot, all or nothing; cross-slot
//! calls rejected; buckets that fail over together.

use serial_test::serial;
use shield_testkit::{Cluster, ShieldCommands};

use crate::{shield_calls, two_keys_in_one_slot, NO_REFILL};

#[test]
#[serial]
fn absorball_in_one_slot_is_all_or_nothing_and_cross_slot_is_rejected() {
    let cluster = Cluster::for_test();
    let (api, ip, slot) = two_keys_in_one_slot(&cluster, "user:7", "api", "ip");
    let limits = [
        (api.as_str(), 10, NO_REFILL, 3),
        (ip.as_str(), 4, NO_REFILL, 3),
    ];

    // Through the cluster client, as an application would call it.
    let mut cc = cluster.conn();
    assert_eq!(
        cc.try_absorb_all(&limits).unwrap(),
        (1, 0, vec![7, 1], vec![])
    );
    let (admitted, _, left, short) = cc.try_absorb_all(&limits).unwrap();
    assert_eq!((admitted, left, short), (0, vec![7, 1], vec![ip.clone()]));
    assert_eq!(
        cc.absorb(&api, 10, NO_REFILL, None),
        6,
        "api was not charged by the denied call"
    );

    // COMMAND GETKEYS names every key.
    let owner = cluster.owner_of_slot(slot);
    let mut oc = cluster.conn_to(&owner);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("SHIELD.absorball")
        .arg(&[api.as_str(), "1", "1", "1", ip.as_str(), "1", "1", "1"][..])
        .query(&mut oc)
        .unwrap();
    assert_eq!(keys, [api.clone(), ip.clone()]);

    // Every other master redirects the call and writes nothing.
    for m in cluster.masters().iter().filter(|m| m.id != owner.id) {
        let mut mc = cluster.conn_to(m);
        let calls = shield_calls(&mut mc);
        let err = mc.try_absorb_all(&limits).unwrap_err();
        assert_eq!(
            err.redirect_node(),
            Some((owner.addr().as_str(), slot)),
            "{err}"
        );
        assert_eq!(shield_calls(&mut mc), calls, "{} ran the command", m.addr());
    }

    // Keys of different slots: CROSSSLOT, from the client and from the node,
    // and no bucket is created anywhere.
    let (a, b) = (cluster.key("cross:a"), cluster.key("cross:b"));
    assert_ne!(cluster.server_keyslot(&a), cluster.server_keyslot(&b));
    let cross = [(a.as_str(), 5, NO_REFILL, 1), (b.as_str(), 5, NO_REFILL, 1)];
    let err = cc.try_absorb_all(&cross).unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    let mut ac = cluster.conn_to(&cluster.owner_of_slot(cluster.server_keyslot(&a)));
    let err = ac.try_absorb_all(&cross).unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    // Each key asked of its own slot's master: a redirect would hide a write.
    for k in [&a, &b] {
        let owner = cluster.owner_of_slot(cluster.server_keyslot(k));
        let exists: i64 = redis::cmd("EXISTS")
            .arg(k)
            .query(&mut cluster.conn_to(&owner))
            .unwrap();
        assert_eq!(exists, 0, "{k} was written on {}", owner.addr());
    }
}

#[test]
#[serial]
fn absorball_buckets_survive_a_sigkill_failover_together() {
    let mut cluster = Cluster::own("SIGKILLs the master that owns the buckets");
    let keys: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| cluster.key(&format!("{{multi}}:{n}")))
        .collect();
    let limits: Vec<(&str, u64, u64, u64)> = keys
        .iter()
        .zip([(100, 40), (50, 25), (7, 3)])
        .map(|(k, (capacity, tokens))| (k.as_str(), capacity, NO_REFILL, tokens))
        .collect();
    let mut cc = cluster.conn();
    assert_eq!(
        cc.try_absorb_all(&limits).unwrap(),
        (1, 0, vec![60, 25, 4], vec![])
    );
    let slot = cluster.server_keyslot(&keys[0]);
    let owner = cluster.owner_of_slot(slot);
    let mut oc = cluster.conn_to(&owner);
    let before: Vec<_> = keys.iter().map(|k| oc.stored(k)).collect();
    assert_eq!(oc.wait_replicas(1), 1, "WAIT 1 on {}", owner.addr());
    let replica = cluster
        .replicas_of(&owner.id)
        .into_iter()
        .next()
        .expect("the owner has a replica");

    cluster.kill(&owner);
    cluster.wait_promoted(&replica, slot);
    let mut pc = cluster.conn_to(&replica);
    let after: Vec<_> = keys.iter().map(|k| pc.stored(k)).collect();
    assert_eq!(after, before, "state on the promoted replica");
    // Every bucket continues from where it was: none came back full.
    let mut cc = cluster.conn();
    assert_eq!(
        cc.try_absorb_all(&limits).unwrap(),
        (1, 0, vec![20, 0, 1], vec![])
    );
    let (admitted, retry, left, short) = cc.try_absorb_all(&limits).unwrap();
    assert_eq!((admitted, left), (0, vec![20, 0, 1]));
    assert_eq!(short, [keys[0].clone(), keys[1].clone(), keys[2].clone()]);
    assert!(retry > 0);
}
