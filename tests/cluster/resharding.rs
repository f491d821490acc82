//! Resharding under load, the legacy way: `CLUSTER SETSLOT` + `MIGRATE`.

use std::sync::Arc;
use std::time::Instant;

use serial_test::serial;
use shield_testkit::{key_slot, Cluster, ShieldCommands};

use crate::load::{assert_buckets_hold_the_rest, keys_in_slot, Load};
use crate::NO_REFILL;

#[test]
#[serial]
fn resharding_a_slot_under_load_loses_and_creates_no_tokens() {
    let cluster = Cluster::for_test();
    // All buckets share one slot through a hash tag.
    let tag = "reshard";
    let slot = key_slot(tag.as_bytes());
    // 8 big buckets (never empty during the test) and 8 small ones (drained
    // quickly, then every call is denied): capacity per key index.
    let capacity = |i: usize| if i < 8 { 1_000_000u64 } else { 50 };
    let keys: Arc<Vec<String>> = Arc::new(
        (0..16)
            .map(|i| cluster.key(&format!("{{{tag}}}:bucket:{i}")))
            .collect(),
    );
    // Idle buckets in the same slot, touched once before the move, to see
    // what MIGRATE does to the absolute expiry.
    let idle: Vec<String> = (0..4)
        .map(|i| cluster.key(&format!("{{{tag}}}:idle:{i}")))
        .collect();
    let mut cc = cluster.conn();
    for k in keys.iter().chain(&idle) {
        assert_eq!(key_slot(k.as_bytes()), slot);
    }
    for k in &idle {
        assert_eq!(cc.absorb(k, 10, NO_REFILL, None), 9);
    }

    let source = cluster.owner_of_slot(slot);
    let target = cluster.another_master(&source);
    let mut src = cluster.conn_to(&source);
    let idle_before: Vec<i64> = idle.iter().map(|k| src.stored(k).1).collect();

    // Client threads: each its own cluster connection, absorbing 1-3 tokens
    // from random buckets of the slot until told to stop, counting per bucket
    // the tokens admitted. Any error is recorded.
    let load = Load::start(&cluster, &keys, capacity, 4, 3);

    load.wait_calls(500, "load before the migration");
    let calls_before = load.calls();
    let started = Instant::now();
    // While the slot is migrating, the source answers ASK for the buckets it
    // has already handed over (the cluster client then retries on the target
    // after ASKING). Probe that with calls that are always denied and so
    // write nothing (more tokens than the capacity).
    let mut asks = 0;
    let mut probe = cluster.conn_to(&source);
    let mut probe_target = cluster.conn_to(&target);
    let batches = cluster.migrate_slot(slot, &source, &target, 2, || {
        for (i, k) in keys.iter().enumerate() {
            let cap = capacity(i);
            match probe.try_absorb(k, cap, NO_REFILL, Some(cap + 1)) {
                Ok(-1) => {} // still on the source
                Err(e) if e.code() == Some("ASK") => {
                    assert_eq!(
                        e.redirect_node(),
                        Some((target.addr().as_str(), slot)),
                        "{e}"
                    );
                    asks += 1;
                    // The target serves it only after ASKING.
                    let moved = probe_target.try_absorb(k, cap, NO_REFILL, Some(cap + 1));
                    assert_eq!(moved.unwrap_err().code(), Some("MOVED"));
                    let left: i64 = redis::pipe()
                        .cmd("ASKING")
                        .ignore()
                        .cmd("SHIELD.absorb")
                        .arg(k)
                        .arg(cap)
                        .arg(NO_REFILL)
                        .arg(cap + 1)
                        .query::<(i64,)>(&mut probe_target)
                        .unwrap()
                        .0;
                    assert_eq!(left, -1);
                }
                other => panic!("{k} on the migrating source: {other:?}"),
            }
        }
        load.wait_calls(50, "load between MIGRATE batches");
    });
    assert!(
        asks > 0,
        "the source never answered ASK during the migration"
    );
    let migration_time = started.elapsed();
    let calls_during = load.calls() - calls_before;
    load.wait_calls(500, "load after the migration");
    let total_calls = load.calls();
    let (admitted, _) = load.stop();
    eprintln!(
        "slot {slot} moved {} -> {} in {migration_time:?} ({batches} MIGRATE batches) \
         while clients made {calls_during} calls; {} calls in total; {asks} ASK answers seen",
        source.addr(),
        target.addr(),
        total_calls
    );

    cluster.wait_healthy("the cluster to agree on the new owner of the slot");
    assert_eq!(cluster.owner_of_slot(slot).id, target.id);
    let mut tgt = cluster.conn_to(&target);
    assert_eq!(keys_in_slot(&mut src, slot), 0, "keys left on the source");
    assert_eq!(
        keys_in_slot(&mut tgt, slot),
        (keys.len() + idle.len()) as u64
    );

    // MIGRATE carries the TTL as a relative time, so the absolute expiry (the
    // bucket's state) can move later by the few ms the transfer takes, never
    // earlier: the bucket can only look emptier.
    for (k, before) in idle.iter().zip(&idle_before) {
        let after = tgt.stored(k).1;
        let shift = after - before;
        eprintln!("{k}: expiry moved by {shift} ms");
        assert!(
            (0..=1_000).contains(&shift),
            "{k}: expiry moved by {shift} ms"
        );
        // With 10 tokens per 10^9 s, a few ms are 10^-8 token: still 9 whole tokens.
        assert_eq!(cc.absorb(k, 10, NO_REFILL, Some(10)), -1);
        assert_eq!(cc.absorb(k, 10, NO_REFILL, Some(9)), 0);
    }

    // Every bucket holds exactly what its admitted tokens dictate: `left` more
    // whole tokens can be taken, not `left + 1`.
    assert_buckets_hold_the_rest(&mut cc, &keys, capacity, &admitted);
    eprintln!("tokens admitted per bucket: {admitted:?}");

    // The target's replica got the moved keys too.
    let replica = cluster.replicas_of(&target.id).into_iter().next().unwrap();
    assert_eq!(tgt.wait_replicas(1), 1);
    let mut rc = cluster.replica_conn(&replica);
    for k in keys.iter().chain(&idle) {
        assert_eq!(rc.stored(k), tgt.stored(k), "{k} on {}", replica.addr());
    }
}
