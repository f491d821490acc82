//! Persistence: a master restarted from its AOF.

use std::time::Instant;

use serial_test::serial;
use shield_testkit::{key_slot, Cluster, ShieldCommands};

use crate::NO_REFILL;

#[test]
#[serial]
fn master_restart_from_aof_keeps_its_buckets() {
    let mut cluster = Cluster::own("restarts a master, which then reloads its AOF");
    let master = cluster.masters().remove(0);
    let replica = cluster.replicas_of(&master.id).remove(0);
    // Buckets owned by that master, in various states.
    let params = [
        (100, NO_REFILL, 30),
        (3, 7, 2),
        (30, 60, 13),
        (1_000_000, 3_600, 999),
    ];
    let mut keys = vec![];
    let mut i = 0;
    while keys.len() < 20 {
        let k = cluster.key(&format!("aof:{i}"));
        i += 1;
        if master.serves_slot(key_slot(k.as_bytes())) {
            keys.push((k, params[keys.len() % params.len()]));
        }
    }
    let mut cc = cluster.conn();
    for (k, (cap, period, tokens)) in &keys {
        assert_eq!(
            cc.absorb(k, *cap, *period, Some(*tokens)),
            (cap - tokens) as i64
        );
    }
    let mut mc = cluster.conn_to(&master);
    let before: Vec<_> = keys.iter().map(|(k, _)| mc.stored(k)).collect();
    drop(mc);

    // The data must come back from the master's own AOF, not from its replica:
    // forbid the replica to take over while the master is down.
    cluster
        .conn_to(&replica)
        .config_set("cluster-replica-no-failover", "yes");
    let old_pid = cluster.server_mut(master.port).pid();
    let started = Instant::now();
    cluster.restart(&master);
    assert_ne!(
        cluster.server_mut(master.port).pid(),
        old_pid,
        "a new process"
    );
    let restarted = started.elapsed();
    cluster.wait_healthy("the restarted master to rejoin");
    eprintln!(
        "master {} restarted in {restarted:?}, cluster healthy after {:?}",
        master.addr(),
        started.elapsed()
    );

    let now = cluster
        .topology()
        .into_iter()
        .find(|n| n.id == master.id)
        .unwrap();
    assert!(now.is_master(), "{now:?}");
    assert_eq!(now.slots, master.slots);
    let mut mc = cluster.conn_to(&master);
    for ((k, _), state) in keys.iter().zip(&before) {
        assert_eq!(&mc.stored(k), state, "{k} after the restart");
    }
    // And the buckets continue exactly (those without refill had 70 left).
    for (k, (cap, period, _)) in keys.iter().filter(|(_, p)| p.1 == NO_REFILL) {
        assert_eq!(cc.absorb(k, *cap, *period, None), 69, "{k}");
    }
}
