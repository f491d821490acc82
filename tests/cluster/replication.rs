//! Replication inside the cluster.

use serial_test::serial;
use shield_testkit::{key_slot, Cluster, ShieldCommands};

use crate::NO_REFILL;

#[test]
#[serial]
fn replicas_hold_the_same_value_and_absolute_expiry_as_their_master() {
    let cluster = Cluster::for_test();
    let mut cc = cluster.conn();
    // (capacity, period, tokens): "~0" values, a fractional remainder ("~2"
    // for 3 per 7 s), a real 60 s period, and a big bucket.
    let params = [
        (30, 60, 13),
        (3, 7, 2),
        (10, NO_REFILL, 1),
        (1_000_000, 3_600, 999),
    ];
    let keys: Vec<(String, usize)> = (0..120)
        .map(|i| (cluster.key(&format!("repl:{i}")), i % params.len()))
        .collect();
    for (key, p) in &keys {
        let (cap, period, tokens) = params[*p];
        let left = cc.absorb(key, cap, period, Some(tokens));
        assert!(left >= 0, "{key}: {left}");
    }

    let masters = cluster.masters();
    let mut compared = 0;
    for m in &masters {
        let replicas = cluster.replicas_of(&m.id);
        assert!(!replicas.is_empty(), "master {} has no replica", m.addr());
        let mut mc = cluster.conn_to(m);
        assert_eq!(mc.wait_replicas(replicas.len()), replicas.len());
        for r in &replicas {
            let mut rc = cluster.replica_conn(r);
            for (key, _) in keys
                .iter()
                .filter(|(k, _)| m.serves_slot(key_slot(k.as_bytes())))
            {
                let on_master = mc.stored(key);
                assert!(
                    on_master.0.is_some() && on_master.1 > 0,
                    "{key}: {on_master:?}"
                );
                assert_eq!(
                    rc.stored(key),
                    on_master,
                    "{key} on replica {} of {}",
                    r.addr(),
                    m.addr()
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, keys.len(), "every key compared on one replica");
}
