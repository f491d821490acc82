//! Atomic slot migration (Valkey 9+ CLUSTER MIGRATESLOTS, Redis 8.4+ CLUSTER
//! MIGRATION): on a cluster of our own, since every node must run the module
//! build under test.

use std::sync::Arc;
use std::time::Duration;

use serial_test::serial;
use shield_testkit::cluster::AtomicSlotMigration;
use shield_testkit::{key_slot, server_version_info, wait_until, Cluster, ShieldCommands};

use crate::load::{assert_buckets_hold_the_rest, keys_in_slot, Load};
use crate::{module_listed, NO_REFILL};

/// Straight to the process's stderr: the test harness captures `eprintln!`
/// of passing tests, and a note about what did not run must be seen.
fn note(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("NOTE: {text}\n").as_bytes());
}

/// The server has no atomic slot migration: check that this is what it says
/// (both subcommands unknown) and that it is not a version that should have
/// one, then say loudly what did not run.
fn assert_no_atomic_slot_migration(cluster: &Cluster, kind: &AtomicSlotMigration, what: &str) {
    let AtomicSlotMigration::Unsupported {
        migrateslots,
        migration,
    } = kind
    else {
        panic!("not unsupported: {kind:?}");
    };
    assert!(
        migrateslots.contains("unknown subcommand") && migrateslots.contains("MIGRATESLOTS"),
        "CLUSTER MIGRATESLOTS: {migrateslots}"
    );
    assert!(
        migration.contains("unknown subcommand") && migration.contains("MIGRATION"),
        "CLUSTER MIGRATION: {migration}"
    );
    let (flavor, version) = server_version_info(&mut cluster.conn_to(&cluster.masters()[0]));
    let v: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let (major, minor) = (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
    );
    match flavor.as_str() {
        "valkey" => assert!(major < 9, "Valkey {version} must have CLUSTER MIGRATESLOTS"),
        _ => assert!(
            (major, minor) < (8, 4),
            "Redis {version} must have CLUSTER MIGRATION"
        ),
    }
    note(&format!(
        "{flavor} {version} has no atomic slot migration (CLUSTER MIGRATESLOTS: \"{migrateslots}\"; \
         CLUSTER MIGRATION: \"{migration}\"), so {what} did not run: it runs on Valkey 9+ \
         (and on Redis builds with CLUSTER MIGRATION)"
    ));
}

/// A cluster of our own, when its server has an atomic slot migration;
/// else `None`, once [`assert_no_atomic_slot_migration`] has checked that it
/// should not have one and said that `what` did not run.
fn cluster_with_atomic_slot_migration(what: &str) -> Option<Cluster> {
    let cluster = Cluster::own(
        "needs every node to load the module build under test (SHIELD_MODULE or this tree's)",
    );
    let kind = cluster.atomic_slot_migration();
    if matches!(kind, AtomicSlotMigration::Unsupported { .. }) {
        assert_no_atomic_slot_migration(&cluster, &kind, what);
        return None;
    }
    Some(cluster)
}

#[test]
#[serial]
fn atomic_slot_migration_under_load_keeps_every_bucket_exact() {
    // 50 buckets in one slot (hash tag): even ones big (1,000,000 tokens,
    // never empty during the test), odd ones small (1,000 tokens; every
    // tenth starts empty, the others have 10-149 left, most of which the
    // load takes, so that calls are denied too). NO_REFILL: not
    // one token refills during the test, so every count is exact.
    let tag = "asm";
    let slot = key_slot(tag.as_bytes());
    let Some(cluster) = cluster_with_atomic_slot_migration("the atomic slot migration under load")
    else {
        return;
    };

    let capacity = |i: usize| if i % 2 == 0 { 1_000_000u64 } else { 1_000 };
    let keys: Arc<Vec<String>> = Arc::new(
        (0..50)
            .map(|i| cluster.key(&format!("{{{tag}}}:bucket:{i}")))
            .collect(),
    );
    // Idle buckets of the same slot in various states (real periods too),
    // not touched after their one call: their value and absolute expiry
    // must arrive unchanged.
    let idle_params: [(u64, u64, u64); 6] = [
        (10, NO_REFILL, 3),
        (7, NO_REFILL, 7),
        (1_000, 1_000_000, 1),
        (3, 700, 2),
        (30, 3_600, 13),
        (1_000_000, 3_600, 999),
    ];
    let idle: Vec<String> = (0..idle_params.len())
        .map(|j| cluster.key(&format!("{{{tag}}}:idle:{j}")))
        .collect();
    for k in keys.iter().chain(&idle) {
        assert_eq!(key_slot(k.as_bytes()), slot, "{k}");
    }
    let mut cc = cluster.conn();
    let mut granted: Vec<u64> = (0..keys.len())
        .map(|i| match (capacity(i), i % 10) {
            (1_000, 1) => 1_000,
            (1_000, _) => 850 + (i as u64 * 37) % 140,
            _ => (i as u64 * 7_919) % 500_000 + 1,
        })
        .collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            cc.absorb(k, capacity(i), NO_REFILL, Some(granted[i])),
            (capacity(i) - granted[i]) as i64,
            "{k}"
        );
    }
    for (k, (cap, period, tokens)) in idle.iter().zip(idle_params) {
        assert_eq!(
            cc.absorb(k, cap, period, Some(tokens)),
            (cap - tokens) as i64
        );
    }

    let source = cluster.owner_of_slot(slot);
    let target = cluster.another_master(&source);
    let mut src = cluster.conn_to(&source);
    let idle_before: Vec<_> = idle.iter().map(|k| src.stored(k)).collect();
    for (k, state) in idle.iter().zip(&idle_before) {
        assert!(state.0.is_some() && state.1 > 0, "{k}: {state:?}");
    }

    // Client threads, each with its own cluster connection, absorbing 1-5
    // tokens from random buckets of the slot until told to stop, counting per
    // bucket the tokens granted. Every error is recorded (and fails the test).
    // They also stop if the test fails before it stops them.
    let load = Load::start(&cluster, &keys, capacity, 3, 5);

    load.wait_calls(300, "load before the migration");
    let calls_before = load.calls();
    let mut calls_streamed = 0;
    let mut tgt = cluster.conn_to(&target);
    let migration = cluster.migrate_slot_atomically_holding(slot, &target, || {
        // The source still serves the slot and streams each write to the
        // target, which does not serve the slot yet: it redirects to the
        // source (probed with a call that is always denied: it writes nothing).
        let streamed_from = load.calls();
        load.wait_calls(500, "load while the migration streams the slot");
        calls_streamed = load.calls() - streamed_from;
        let err = tgt
            .try_absorb(&keys[0], capacity(0), NO_REFILL, Some(capacity(0) + 1))
            .expect_err("the importing target must not serve the slot");
        assert_eq!(
            err.redirect_node(),
            Some((source.addr().as_str(), slot)),
            "{err}"
        );
    });
    let calls_during = load.calls() - calls_before;
    load.wait_calls(300, "load after the migration");
    let total_calls = load.calls();
    let (got, denied) = load.stop();
    for (i, g) in got.into_iter().enumerate() {
        granted[i] += g;
    }
    eprintln!(
        "{:?} migration {} of slot {slot} {} -> {} in {:?} (held {:?} while streaming) while \
         clients made {calls_during} calls ({calls_streamed} while it streamed); {} calls in \
         total, {denied} denied\nsource: {:?}\ntarget: {:?}",
        migration.kind,
        migration.task,
        source.addr(),
        target.addr(),
        migration.elapsed,
        migration.held,
        total_calls,
        migration.source_status,
        migration.target_status
    );
    assert_eq!(cluster.owner_of_slot(slot).id, target.id);

    // Every key is on the target; the source deletes its copies.
    let mut tgt = cluster.conn_to(&target);
    assert_eq!(
        keys_in_slot(&mut tgt, slot),
        (keys.len() + idle.len()) as u64
    );
    wait_until(
        Duration::from_secs(60),
        "the source to drop the slot's keys",
        || keys_in_slot(&mut src, slot) == 0,
    );

    // Idle buckets: the same value and absolute expiry, to the millisecond.
    for ((k, before), (cap, period, tokens)) in idle.iter().zip(&idle_before).zip(idle_params) {
        assert_eq!(&tgt.stored(k), before, "{k} on the target");
        // What it holds now: what was left plus the refill since (less than
        // one token for all but the 1,000,000-per-hour bucket).
        let inspected = tgt.inspect(k, cap, period);
        let left = (cap - tokens) as i64;
        if period / cap >= 60 {
            assert_eq!(inspected[0], left, "{k}: {inspected:?}");
        } else {
            assert!(inspected[0] >= left, "{k}: {inspected:?}");
        }
    }
    // Every bucket holds exactly capacity minus the tokens granted, asked of
    // the new owner itself.
    for (i, k) in keys.iter().enumerate() {
        let cap = capacity(i);
        assert!(granted[i] <= cap, "{k}: granted {} > {cap}", granted[i]);
        let inspected = tgt.inspect(k, cap, NO_REFILL);
        assert_eq!(
            inspected[..2],
            [(cap - granted[i]) as i64, cap as i64],
            "{k}: granted {} of {cap}",
            granted[i]
        );
    }
    let drained = (0..keys.len())
        .filter(|&i| granted[i] == capacity(i))
        .count();
    eprintln!(
        "tokens granted per bucket: {granted:?} ({drained} of {} buckets empty)",
        keys.len()
    );

    // The target's replicas got every bucket as the target holds it.
    let replicas = cluster.replicas_of(&target.id);
    assert!(
        !replicas.is_empty(),
        "target {} has no replica",
        target.addr()
    );
    assert_eq!(tgt.wait_replicas(replicas.len()), replicas.len());
    for r in &replicas {
        let mut rc = cluster.replica_conn(r);
        for k in keys.iter().chain(&idle) {
            assert_eq!(rc.stored(k), tgt.stored(k), "{k} on replica {}", r.addr());
        }
    }

    // And the buckets go on from there through the cluster client: `left`
    // more tokens can be taken, not `left + 1`.
    assert_buckets_hold_the_rest(&mut cc, &keys, capacity, &granted);
}

/// Valkey asks each module whether its keys may move by atomic slot
/// migration; before redis-shield said yes (its Valkey option), `CLUSTER
/// MIGRATESLOTS` answered "The module shield does not support atomic slot
/// migrations" on the source (and the target refused the job the same way).
#[test]
#[serial]
fn atomic_slot_migration_is_not_refused_by_the_module() {
    let Some(cluster) = cluster_with_atomic_slot_migration("the atomic slot migration check")
    else {
        return;
    };
    for node in cluster.topology() {
        let (listed, words) = module_listed(&mut cluster.conn_to(&node));
        assert!(listed, "{}: {words:?}", node.addr());
    }
    let key = cluster.key("{asm-accepted}:bucket");
    let slot = key_slot(key.as_bytes());
    let mut cc = cluster.conn();
    assert_eq!(cc.absorb(&key, 100, NO_REFILL, Some(30)), 70);
    let source = cluster.owner_of_slot(slot);
    let before = cluster.conn_to(&source).stored(&key);
    let target = cluster.another_master(&source);
    // Panics with the server's answer if the migration is refused or fails.
    let migration = cluster.migrate_slot_atomically(slot, &target);
    for status in [&migration.source_status, &migration.target_status] {
        assert!(
            !status
                .values()
                .any(|v| v.contains("does not support atomic slot migrations")),
            "{status:?}"
        );
    }
    eprintln!(
        "{:?} migration {} of slot {slot} {} -> {} accepted, done in {:?}: {:?}",
        migration.kind,
        migration.task,
        source.addr(),
        target.addr(),
        migration.elapsed,
        migration.source_status
    );
    assert_eq!(cluster.conn_to(&target).stored(&key), before);
    assert_eq!(cc.absorb(&key, 100, NO_REFILL, None), 69);
}
