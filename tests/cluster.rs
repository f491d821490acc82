// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

#![cfg(feature = "cluster-tests")]
//! redis-shield on a real Redis Cluster: 3 masters + 3 replicas.
//!
//! ```sh
//! cargo test --features cluster-tests --test cluster
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002 \
//!     cargo test --features cluster-tests --test cluster
//! ```
//!
//! Without `REDIS_CLUSTER_URLS` every test starts its own fresh cluster (about
//! 2 s; see tests/cluster_harness). With it, the tests use that cluster, except
//! the two that must SIGKILL or restart a server process
//! (`sigkill_failover_...`, `master_restart_from_aof_...`) and the two atomic
//! slot migration tests (`atomic_slot_migration_...`, which need every node to
//! run the module build under test): they always start their own cluster and
//! say so on stderr. The atomic slot migration tests run the migration on
//! Valkey 9+ (and Redis builds with `CLUSTER MIGRATION`); elsewhere they check
//! that the server has no such command and print a NOTE.
//!
//! The tests run one at a time (`#[serial]`): each cluster is six processes,
//! and a loaded 2-core machine must not delay cluster heartbeats into false
//! failovers.
//!
//! Buckets that must not refill during a test use `NO_REFILL` as their period
//! (capacity tokens per ~32 years), so every expected answer is exact.

mod cluster_harness;
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_harness::{
    absorb, bucket_state, info, key_slot, node_conf_options, node_conf_path, parse_cluster_nodes,
    try_absorb, AtomicSlotMigration, Cluster, ClusterNode, Rng, MASTERS, NODES,
};
use common::{info_field, inspect, wait_until};
use redis::Value;
use serial_test::serial;

/// A period in which nothing measurable refills: 10^9 s. With a capacity that
/// divides 10^12 the stored value is always `~0`.
const NO_REFILL: u64 = 1_000_000_000;

/// All strings and integers of a reply, flattened (for COMMAND INFO).
fn flatten(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::Int(i) => out.push(i.to_string()),
        Value::Okay => out.push("OK".into()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

/// `WAIT numreplicas 5000` on a node, returning how many replicas acknowledged.
fn wait_replicas(c: &mut redis::Connection, n: usize) -> usize {
    redis::cmd("WAIT").arg(n).arg(5_000).query(c).expect("WAIT")
}

fn shield_calls(c: &mut redis::Connection) -> u64 {
    info_field(&info(c, "shield"), "shield_calls")
        .and_then(|v| v.parse().ok())
        .expect("shield_calls in INFO shield")
}

fn dbsize(c: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(c).expect("DBSIZE")
}

// ---------------------------------------------------------------------------
// The module on every node
// ---------------------------------------------------------------------------

#[test]
#[serial]
fn module_is_loaded_on_every_node() {
    let cluster = Cluster::for_test();
    let nodes = cluster.topology();
    let masters: Vec<&ClusterNode> = nodes.iter().filter(|n| n.is_master()).collect();
    if cluster.is_external() {
        eprintln!(
            "external cluster: {} nodes, {} masters",
            nodes.len(),
            masters.len()
        );
    } else {
        assert_eq!(nodes.len(), NODES, "{nodes:?}");
        assert_eq!(masters.len(), MASTERS, "{nodes:?}");
        for m in &masters {
            let replicas = nodes
                .iter()
                .filter(|n| n.master_id.as_deref() == Some(&m.id))
                .count();
            assert_eq!(replicas, 1, "replicas of {}", m.addr());
        }
    }
    assert_eq!(
        masters.iter().map(|m| m.slot_count()).sum::<usize>(),
        16384,
        "all slots served"
    );

    for node in &nodes {
        let addr = node.addr();
        let mut c = cluster.conn_to(node);
        // MODULE LIST names the module.
        let modules: Value = redis::cmd("MODULE").arg("LIST").query(&mut c).unwrap();
        let mut words = vec![];
        flatten(&modules, &mut words);
        assert!(
            words.iter().any(|w| w == "shield"),
            "module not loaded on {addr}: MODULE LIST = {words:?}"
        );
        // The command is registered with its flags and its key at position 1.
        let cmd_info: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg("SHIELD.absorb")
            .query(&mut c)
            .unwrap();
        let mut words = vec![];
        flatten(&cmd_info, &mut words);
        assert_eq!(
            words.first().map(|w| w.to_lowercase()).as_deref(),
            Some("shield.absorb")
        );
        assert_eq!(
            &words[1..5],
            ["-4", "write", "denyoom", "module"],
            "{addr}: {words:?}"
        );
        assert!(words.iter().any(|w| w == "fast"), "{addr}: {words:?}");
        // COMMAND GETKEYS finds the key (what cluster routing and ACLs use).
        let keys: Vec<String> = redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg("SHIELD.absorb")
            .arg("some:key")
            .arg(10)
            .arg(60)
            .query(&mut c)
            .unwrap();
        assert_eq!(keys, ["some:key"], "{addr}");
        // The INFO section exists.
        let shield = info(&mut c, "shield");
        assert!(
            shield.contains("shield_calls:"),
            "{addr}: INFO shield = {shield}"
        );
        eprintln!(
            "{addr} {:<7} module loaded",
            if node.is_master() {
                "master"
            } else {
                "replica"
            }
        );
    }
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

#[test]
#[serial]
fn only_the_slot_owner_answers_other_masters_say_moved_and_write_nothing() {
    let cluster = Cluster::for_test();
    let masters = cluster.masters();
    let mut conns: Vec<redis::Connection> = masters.iter().map(|m| cluster.conn_to(m)).collect();
    let before: Vec<(u64, u64)> = conns
        .iter_mut()
        .map(|c| (dbsize(c), shield_calls(c)))
        .collect();
    let mut owned = vec![0u64; masters.len()];
    let mut cc = cluster.conn();
    let mut rng = Rng::new();
    let mut slots = BTreeSet::new();

    // Hash-tag corner cases: empty tag, two tags, unclosed brace, nested braces.
    for k in ["{}b", "{a}{b}", "a{b", "{{x}}y", "x{}{y}", "{user:123}:api"] {
        assert_eq!(
            cluster.server_keyslot(k),
            key_slot(k.as_bytes()),
            "slot of {k}"
        );
    }
    for i in 0..300 {
        let key = cluster.key(&format!("route:{i}:{:x}", rng.next_u64()));
        // The harness computes slots like the server does.
        let slot = cluster.server_keyslot(&key);
        assert_eq!(slot, key_slot(key.as_bytes()), "slot of {key}");
        slots.insert(slot);
        let owner = masters
            .iter()
            .position(|m| m.serves_slot(slot))
            .expect("slot owner");
        owned[owner] += 1;
        for (j, m) in masters.iter().enumerate() {
            if j == owner {
                continue;
            }
            let err = try_absorb(&mut conns[j], &key, 10, NO_REFILL, None)
                .expect_err("a master that does not own the slot must redirect");
            assert_eq!(err.code(), Some("MOVED"), "{} for {key}: {err}", m.addr());
            let expected = masters[owner].addr();
            assert_eq!(
                err.redirect_node(),
                Some((expected.as_str(), slot)),
                "{err}"
            );
        }
        // The owner answers; the cluster client finds it on its own.
        assert_eq!(absorb(&mut conns[owner], &key, 10, NO_REFILL, None), 9);
        assert_eq!(absorb(&mut cc, &key, 10, NO_REFILL, None), 8);
        // Any node names the key (GETKEYS itself is not routed by key).
        let j = (owner + 1) % masters.len();
        let keys: Vec<String> = redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg("SHIELD.absorb")
            .arg(&key)
            .arg(10)
            .arg(NO_REFILL)
            .query(&mut conns[j])
            .unwrap();
        assert_eq!(keys, std::slice::from_ref(&key));
    }
    assert!(owned.iter().all(|&n| n > 0), "keys per master: {owned:?}");
    assert!(slots.len() > 250, "only {} distinct slots", slots.len());

    // Exactly the owners wrote: one new key and two SHIELD calls per key they
    // own; the MOVED answers of the other masters left no trace.
    for (j, c) in conns.iter_mut().enumerate() {
        let after = (dbsize(c), shield_calls(c));
        assert_eq!(
            after,
            (before[j].0 + owned[j], before[j].1 + 2 * owned[j]),
            "master {} (dbsize, shield_calls): before {:?}",
            masters[j].addr(),
            before[j]
        );
    }
    eprintln!("300 keys in {} slots, per master {owned:?}", slots.len());
}

#[test]
#[serial]
fn hash_tagged_keys_share_a_slot_and_pipeline_together() {
    let cluster = Cluster::for_test();
    let api = cluster.key("{user:123}:api");
    let web = cluster.key("{user:123}:web");
    let slot = cluster.server_keyslot(&api);
    assert_eq!(cluster.server_keyslot(&web), slot);
    assert_eq!(slot, cluster.server_keyslot("{user:123}"));
    assert_eq!(slot, key_slot(b"user:123"));

    // A cluster pipeline: both keys go to the same node in one round trip.
    let mut cc = cluster.conn();
    let replies: Vec<i64> = redis::cluster::cluster_pipe()
        .cmd("SHIELD.absorb")
        .arg(&api)
        .arg(100)
        .arg(NO_REFILL)
        .arg(10)
        .cmd("SHIELD.absorb")
        .arg(&web)
        .arg(5)
        .arg(NO_REFILL)
        .cmd("SHIELD.absorb")
        .arg(&api)
        .arg(100)
        .arg(NO_REFILL)
        .cmd("SHIELD.absorb")
        .arg(&web)
        .arg(5)
        .arg(NO_REFILL)
        .arg(5)
        .query(&mut cc)
        .unwrap();
    assert_eq!(replies, [90, 4, 89, -1]);

    // One slot, so also one atomic MULTI/EXEC on the owner.
    let owner = cluster.owner_of_slot(slot);
    let mut o = cluster.conn_to(&owner);
    let replies: Vec<i64> = redis::pipe()
        .atomic()
        .cmd("SHIELD.absorb")
        .arg(&api)
        .arg(100)
        .arg(NO_REFILL)
        .cmd("SHIELD.absorb")
        .arg(&web)
        .arg(5)
        .arg(NO_REFILL)
        .query(&mut o)
        .unwrap();
    assert_eq!(replies, [88, 3]);

    // Untagged keys of two slots of the same master cannot share a
    // transaction: EXEC answers CROSSSLOT and nothing is written.
    let mut rng = Rng::new();
    let (a, b) = loop {
        let a = cluster.key(&format!("plain:{:x}", rng.next_u64()));
        let b = cluster.key(&format!("plain:{:x}", rng.next_u64()));
        let (sa, sb) = (key_slot(a.as_bytes()), key_slot(b.as_bytes()));
        if sa != sb && owner.serves_slot(sa) && owner.serves_slot(sb) {
            break (a, b);
        }
    };
    let _: () = redis::cmd("MULTI").query(&mut o).unwrap();
    for k in [&a, &b] {
        let queued: String = redis::cmd("SHIELD.absorb")
            .arg(k)
            .arg(5)
            .arg(NO_REFILL)
            .query(&mut o)
            .unwrap();
        assert_eq!(queued, "QUEUED");
    }
    let err = redis::cmd("EXEC").query::<Value>(&mut o).unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    for k in [&a, &b] {
        let exists: i64 = redis::cmd("EXISTS").arg(k).query(&mut o).unwrap();
        assert_eq!(exists, 0, "{k} written by an aborted transaction");
    }
}

#[test]
#[serial]
fn cluster_pipeline_across_many_slots_answers_in_order() {
    let cluster = Cluster::for_test();
    let n = 300u64;
    let keys: Vec<String> = (0..n).map(|i| cluster.key(&format!("pipe:{i}"))).collect();
    let params = |i: u64| (10 + i % 17, 1 + i % 7); // (capacity, tokens)
    let slots: BTreeSet<u16> = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
    let masters = cluster.masters();
    for m in &masters {
        assert!(
            slots.iter().any(|&s| m.serves_slot(s)),
            "no key on {}",
            m.addr()
        );
    }

    let pipeline = || {
        let mut p = redis::cluster::cluster_pipe();
        for (i, key) in keys.iter().enumerate() {
            let (cap, tokens) = params(i as u64);
            p.cmd("SHIELD.absorb")
                .arg(key)
                .arg(cap)
                .arg(NO_REFILL)
                .arg(tokens);
        }
        p
    };
    let mut cc = cluster.conn();
    let first: Vec<i64> = pipeline().query(&mut cc).unwrap();
    let second: Vec<i64> = pipeline().query(&mut cc).unwrap();
    for i in 0..n {
        let (cap, tokens) = params(i);
        let (cap, tokens) = (cap as i64, tokens as i64);
        assert_eq!(first[i as usize], cap - tokens, "first call, key {i}");
        let left = cap - 2 * tokens;
        assert_eq!(
            second[i as usize],
            if left >= 0 { left } else { -1 },
            "second call, key {i}"
        );
    }
    eprintln!(
        "{n} commands over {} slots and {} masters",
        slots.len(),
        masters.len()
    );
}

// ---------------------------------------------------------------------------
// Replication inside the cluster
// ---------------------------------------------------------------------------

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
        let left = absorb(&mut cc, key, cap, period, Some(tokens));
        assert!(left >= 0, "{key}: {left}");
    }

    let masters = cluster.masters();
    let mut compared = 0;
    for m in &masters {
        let replicas = cluster.replicas_of(&m.id);
        assert!(!replicas.is_empty(), "master {} has no replica", m.addr());
        let mut mc = cluster.conn_to(m);
        assert_eq!(wait_replicas(&mut mc, replicas.len()), replicas.len());
        for r in &replicas {
            let mut rc = cluster.replica_conn(r);
            for (key, _) in keys
                .iter()
                .filter(|(k, _)| m.serves_slot(key_slot(k.as_bytes())))
            {
                let on_master = bucket_state(&mut mc, key);
                assert!(
                    on_master.0.is_some() && on_master.1 > 0,
                    "{key}: {on_master:?}"
                );
                assert_eq!(
                    bucket_state(&mut rc, key),
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

// ---------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------

/// Drain `key` to `left` of `capacity` (no refill) through the cluster client,
/// then return its slot, owner and the owner's replica, after checking that
/// the owner holds the key and the replica has acknowledged its state.
fn half_drained_bucket(
    cluster: &Cluster,
    key: &str,
    capacity: u64,
    left: u64,
) -> (u16, ClusterNode, ClusterNode, (Option<Vec<u8>>, i64)) {
    let mut cc = cluster.conn();
    for taken in 1..=capacity - left {
        assert_eq!(
            absorb(&mut cc, key, capacity, NO_REFILL, None),
            (capacity - taken) as i64
        );
    }
    let slot = cluster.server_keyslot(key);
    let owner = cluster.owner_of_slot(slot);
    // It really is the owner: it holds the key; the other masters redirect to it.
    let mut oc = cluster.conn_to(&owner);
    let state = bucket_state(&mut oc, key);
    assert_eq!(
        state.0.as_deref(),
        Some(&b"~0"[..]),
        "{key} on {}",
        owner.addr()
    );
    for m in cluster.masters().iter().filter(|m| m.id != owner.id) {
        let err = redis::cmd("GET")
            .arg(key)
            .query::<Value>(&mut cluster.conn_to(m))
            .unwrap_err();
        assert_eq!(
            err.redirect_node(),
            Some((owner.addr().as_str(), slot)),
            "{err}"
        );
    }
    let replica = cluster
        .replicas_of(&owner.id)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("owner {} has no replica", owner.addr()));
    assert_eq!(wait_replicas(&mut oc, 1), 1, "WAIT 1 on {}", owner.addr());
    assert_eq!(
        bucket_state(&mut cluster.replica_conn(&replica), key),
        state
    );
    (slot, owner, replica, state)
}

#[test]
#[serial]
fn sigkill_failover_continues_from_the_replicated_state_not_a_full_bucket() {
    let mut cluster = Cluster::own("SIGKILLs the master that owns the bucket");
    let key = cluster.key("failover:sigkill");
    let (slot, owner, replica, state) = half_drained_bucket(&cluster, &key, 100, 50);
    let mut opened_before = cluster.conn();

    let killed_at = Instant::now();
    cluster.kill(&owner);
    cluster.wait_promoted(&replica, slot);
    eprintln!(
        "replica {} promoted, cluster ok, {:?} after SIGKILL of {}",
        replica.addr(),
        killed_at.elapsed(),
        owner.addr()
    );
    // The survivors flag the killed master as failed; the replica owns the slot.
    let topology = cluster.topology();
    let old = topology.iter().find(|n| n.id == owner.id).unwrap();
    assert!(old.flags.iter().any(|f| f == "fail"), "{old:?}");
    assert_eq!(cluster.owner_of_slot(slot).id, replica.id);

    // Same stored state on the promoted replica, and the bucket continues from
    // it: 50 tokens left, so this call leaves 49 (a full bucket would say 99).
    assert_eq!(bucket_state(&mut cluster.conn_to(&replica), &key), state);
    let mut cc = cluster.conn();
    assert_eq!(absorb(&mut cc, &key, 100, NO_REFILL, None), 49);

    // A cluster connection opened before the kill, probed with a call that is
    // always denied (more tokens than the capacity: nothing can be written).
    // Reported, not asserted: it is the client library's behaviour (redis-rs
    // 1.8's synchronous client keeps using the dead master's address, so every
    // call fails with "Connection refused"; see CLUSTER.md).
    let probe = try_absorb(&mut opened_before, &key, 100, NO_REFILL, Some(101));
    eprintln!("a cluster connection opened before the SIGKILL answers: {probe:?}");

    // The old master comes back (from its AOF) as a replica of the promoted
    // node and takes the current state from it.
    cluster.start_again(&owner);
    cluster.wait_healthy("the killed master to rejoin as a replica");
    assert_follows_with_same_state(&cluster, &owner, &replica, &key);
    assert_eq!(absorb(&mut cc, &key, 100, NO_REFILL, None), 48);
}

/// The old master `old` is now a replica of `new`, and (after `WAIT 1` on
/// `new`) holds the same state of `key`.
fn assert_follows_with_same_state(
    cluster: &Cluster,
    old: &ClusterNode,
    new: &ClusterNode,
    key: &str,
) {
    let old = cluster
        .topology()
        .into_iter()
        .find(|n| n.id == old.id)
        .expect("old master still in the topology");
    assert_eq!(old.master_id.as_deref(), Some(new.id.as_str()));
    let mut nc = cluster.conn_to(new);
    assert_eq!(wait_replicas(&mut nc, 1), 1);
    assert_eq!(
        bucket_state(&mut cluster.replica_conn(&old), key),
        bucket_state(&mut nc, key)
    );
}

#[test]
#[serial]
fn manual_cluster_failover_keeps_the_bucket() {
    let cluster = Cluster::for_test();
    let key = cluster.key("failover:manual");
    let mut cc = cluster.conn(); // made before the failover, used after it
    let (slot, owner, replica, state) = half_drained_bucket(&cluster, &key, 100, 50);

    let started = Instant::now();
    let ok: String = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut cluster.conn_to(&replica))
        .unwrap();
    assert_eq!(ok, "OK");
    cluster.wait_promoted(&replica, slot);
    eprintln!(
        "manual failover to {} took {:?}",
        replica.addr(),
        started.elapsed()
    );

    // The client made before the failover follows the MOVED of the old master.
    assert_eq!(bucket_state(&mut cluster.conn_to(&replica), &key), state);
    assert_eq!(absorb(&mut cc, &key, 100, NO_REFILL, None), 49);
    // The old master is now a replica of the new one, with the new state.
    assert_follows_with_same_state(&cluster, &owner, &replica, &key);
}

// ---------------------------------------------------------------------------
// Resharding under load
// ---------------------------------------------------------------------------

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
        assert_eq!(absorb(&mut cc, k, 10, NO_REFILL, None), 9);
    }

    let source = cluster.owner_of_slot(slot);
    let target = cluster
        .masters()
        .into_iter()
        .find(|m| m.id != source.id)
        .unwrap();
    let mut src = cluster.conn_to(&source);
    let idle_before: Vec<i64> = idle.iter().map(|k| bucket_state(&mut src, k).1).collect();

    // Client threads: each its own cluster connection, absorbing 1-3 tokens
    // from random buckets of the slot until told to stop, counting per bucket
    // the tokens admitted. Any error is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let mut conn = cluster.conn();
            let (keys, stop, calls, errors) = (
                Arc::clone(&keys),
                Arc::clone(&stop),
                Arc::clone(&calls),
                Arc::clone(&errors),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new();
                let mut admitted = vec![0u64; keys.len()];
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let i = rng.below(keys.len() as u64) as usize;
                    let tokens = 1 + n % 3;
                    n += 1;
                    match try_absorb(&mut conn, &keys[i], capacity(i), NO_REFILL, Some(tokens)) {
                        Ok(left) if left >= 0 => admitted[i] += tokens,
                        Ok(-1) => {}
                        Ok(other) => errors.lock().unwrap().push(format!("reply {other}")),
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                admitted
            })
        })
        .collect();
    let calls_now = || calls.load(Ordering::Relaxed);
    let wait_calls = |n: u64, what: &str| {
        let target = calls_now() + n;
        wait_until(Duration::from_secs(60), what, || calls_now() >= target);
    };

    wait_calls(500, "load before the migration");
    let calls_before = calls_now();
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
            match try_absorb(&mut probe, k, cap, NO_REFILL, Some(cap + 1)) {
                Ok(-1) => {} // still on the source
                Err(e) if e.code() == Some("ASK") => {
                    assert_eq!(
                        e.redirect_node(),
                        Some((target.addr().as_str(), slot)),
                        "{e}"
                    );
                    asks += 1;
                    // The target serves it only after ASKING.
                    let moved = try_absorb(&mut probe_target, k, cap, NO_REFILL, Some(cap + 1));
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
        wait_calls(50, "load between MIGRATE batches");
    });
    assert!(
        asks > 0,
        "the source never answered ASK during the migration"
    );
    let migration_time = started.elapsed();
    let calls_during = calls_now() - calls_before;
    wait_calls(500, "load after the migration");
    stop.store(true, Ordering::Relaxed);
    let mut admitted = vec![0u64; keys.len()];
    for t in threads {
        for (i, a) in t.join().expect("client thread").into_iter().enumerate() {
            admitted[i] += a;
        }
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "clients saw {} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    eprintln!(
        "slot {slot} moved {} -> {} in {migration_time:?} ({batches} MIGRATE batches) \
         while clients made {calls_during} calls; {} calls in total; {asks} ASK answers seen",
        source.addr(),
        target.addr(),
        calls_now()
    );

    cluster.wait_healthy("the cluster to agree on the new owner of the slot");
    assert_eq!(cluster.owner_of_slot(slot).id, target.id);
    let mut tgt = cluster.conn_to(&target);
    let count = |c: &mut redis::Connection| -> u64 {
        redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query(c)
            .unwrap()
    };
    assert_eq!(count(&mut src), 0, "keys left on the source");
    assert_eq!(count(&mut tgt), (keys.len() + idle.len()) as u64);

    // MIGRATE carries the TTL as a relative time, so the absolute expiry (the
    // bucket's state) can move later by the few ms the transfer takes, never
    // earlier: the bucket can only look emptier.
    for (k, before) in idle.iter().zip(&idle_before) {
        let after = bucket_state(&mut tgt, k).1;
        let shift = after - before;
        eprintln!("{k}: expiry moved by {shift} ms");
        assert!(
            (0..=1_000).contains(&shift),
            "{k}: expiry moved by {shift} ms"
        );
        // With 10 tokens per 10^9 s, a few ms are 10^-8 token: still 9 whole tokens.
        assert_eq!(absorb(&mut cc, k, 10, NO_REFILL, Some(10)), -1);
        assert_eq!(absorb(&mut cc, k, 10, NO_REFILL, Some(9)), 0);
    }

    // Every bucket holds exactly what its admitted tokens dictate: `left` more
    // whole tokens can be taken, not `left + 1`.
    for (i, k) in keys.iter().enumerate() {
        let cap = capacity(i);
        assert!(
            admitted[i] <= cap,
            "{k}: admitted {} > capacity {cap}",
            admitted[i]
        );
        let left = cap - admitted[i];
        assert_eq!(
            absorb(&mut cc, k, cap, NO_REFILL, Some(left + 1)),
            -1,
            "{k} holds more than {left}"
        );
        if left > 0 {
            assert_eq!(
                absorb(&mut cc, k, cap, NO_REFILL, Some(left)),
                0,
                "{k} holds less than {left}"
            );
        }
    }
    eprintln!("tokens admitted per bucket: {admitted:?}");

    // The target's replica got the moved keys too.
    let replica = cluster.replicas_of(&target.id).into_iter().next().unwrap();
    assert_eq!(wait_replicas(&mut tgt, 1), 1);
    let mut rc = cluster.replica_conn(&replica);
    for k in keys.iter().chain(&idle) {
        assert_eq!(
            bucket_state(&mut rc, k),
            bucket_state(&mut tgt, k),
            "{k} on {}",
            replica.addr()
        );
    }
}

// ---------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------

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
            absorb(&mut cc, k, *cap, *period, Some(*tokens)),
            (cap - tokens) as i64
        );
    }
    let mut mc = cluster.conn_to(&master);
    let before: Vec<_> = keys.iter().map(|(k, _)| bucket_state(&mut mc, k)).collect();
    drop(mc);

    // The data must come back from the master's own AOF, not from its replica:
    // forbid the replica to take over while the master is down.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("cluster-replica-no-failover")
        .arg("yes")
        .query(&mut cluster.conn_to(&replica))
        .unwrap();
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
        assert_eq!(&bucket_state(&mut mc, k), state, "{k} after the restart");
    }
    // And the buckets continue exactly (those without refill had 70 left).
    for (k, (cap, period, _)) in keys.iter().filter(|(_, p)| p.1 == NO_REFILL) {
        assert_eq!(absorb(&mut cc, k, *cap, *period, None), 69, "{k}");
    }
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[test]
#[serial]
fn concurrent_clients_on_all_masters_admit_exactly_capacity_per_key() {
    let cluster = Cluster::for_test();
    let capacity = 40u64;
    let (threads, rounds) = (8usize, 8usize); // 64 calls per key: 40 admitted, 24 denied
    let keys: Arc<Vec<String>> =
        Arc::new((0..30).map(|i| cluster.key(&format!("conc:{i}"))).collect());
    for m in cluster.masters() {
        let n = keys
            .iter()
            .filter(|k| m.serves_slot(key_slot(k.as_bytes())))
            .count();
        assert!(n > 0, "no key on master {}", m.addr());
    }
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut conn = cluster.conn();
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                let mut admitted: HashMap<usize, u64> = HashMap::new();
                for _ in 0..rounds {
                    // Each thread walks the keys from a different start.
                    for j in 0..keys.len() {
                        let i = (j + t * 7) % keys.len();
                        if absorb(&mut conn, &keys[i], capacity, NO_REFILL, None) >= 0 {
                            *admitted.entry(i).or_default() += 1;
                        }
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = vec![0u64; keys.len()];
    for h in handles {
        for (i, n) in h.join().expect("client thread") {
            admitted[i] += n;
        }
    }
    assert_eq!(
        admitted,
        vec![capacity; keys.len()],
        "tokens admitted per key"
    );
    let mut cc = cluster.conn();
    for k in keys.iter() {
        assert_eq!(absorb(&mut cc, k, capacity, NO_REFILL, None), -1);
    }
}

// ---------------------------------------------------------------------------
// SHIELD.absorball / SHIELD.inspect on the cluster
// ---------------------------------------------------------------------------

/// `SHIELD.absorball` with `(key, capacity, period, tokens)` groups, on any
/// connection: `(admitted, retry_after_ms, tokens left, short keys)`.
fn try_absorb_all(
    c: &mut impl redis::ConnectionLike,
    buckets: &[(&str, u64, u64, u64)],
) -> redis::RedisResult<(i64, i64, Vec<i64>, Vec<String>)> {
    let mut cmd = redis::cmd("SHIELD.absorball");
    for (key, capacity, period, tokens) in buckets {
        cmd.arg(*key).arg(*capacity).arg(*period).arg(*tokens);
    }
    cmd.query(c)
}

#[test]
#[serial]
fn absorball_in_one_slot_is_all_or_nothing_and_cross_slot_is_rejected() {
    let cluster = Cluster::for_test();
    let api = cluster.key("{user:7}:api");
    let ip = cluster.key("{user:7}:ip");
    let slot = cluster.server_keyslot(&api);
    assert_eq!(cluster.server_keyslot(&ip), slot);
    let limits = [
        (api.as_str(), 10, NO_REFILL, 3),
        (ip.as_str(), 4, NO_REFILL, 3),
    ];

    // Through the cluster client, as an application would call it.
    let mut cc = cluster.conn();
    assert_eq!(
        try_absorb_all(&mut cc, &limits).unwrap(),
        (1, 0, vec![7, 1], vec![])
    );
    let (admitted, _, left, short) = try_absorb_all(&mut cc, &limits).unwrap();
    assert_eq!((admitted, left, short), (0, vec![7, 1], vec![ip.clone()]));
    assert_eq!(
        absorb(&mut cc, &api, 10, NO_REFILL, None),
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
        let err = try_absorb_all(&mut mc, &limits).unwrap_err();
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
    let err = try_absorb_all(&mut cc, &cross).unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    let mut ac = cluster.conn_to(&cluster.owner_of_slot(cluster.server_keyslot(&a)));
    let err = try_absorb_all(&mut ac, &cross).unwrap_err();
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
        try_absorb_all(&mut cc, &limits).unwrap(),
        (1, 0, vec![60, 25, 4], vec![])
    );
    let slot = cluster.server_keyslot(&keys[0]);
    let owner = cluster.owner_of_slot(slot);
    let mut oc = cluster.conn_to(&owner);
    let before: Vec<_> = keys.iter().map(|k| bucket_state(&mut oc, k)).collect();
    assert_eq!(wait_replicas(&mut oc, 1), 1, "WAIT 1 on {}", owner.addr());
    let replica = cluster
        .replicas_of(&owner.id)
        .into_iter()
        .next()
        .expect("the owner has a replica");

    cluster.kill(&owner);
    cluster.wait_promoted(&replica, slot);
    let mut pc = cluster.conn_to(&replica);
    let after: Vec<_> = keys.iter().map(|k| bucket_state(&mut pc, k)).collect();
    assert_eq!(after, before, "state on the promoted replica");
    // Every bucket continues from where it was: none came back full.
    let mut cc = cluster.conn();
    assert_eq!(
        try_absorb_all(&mut cc, &limits).unwrap(),
        (1, 0, vec![20, 0, 1], vec![])
    );
    let (admitted, retry, left, short) = try_absorb_all(&mut cc, &limits).unwrap();
    assert_eq!((admitted, left), (0, vec![20, 0, 1]));
    assert_eq!(short, [keys[0].clone(), keys[1].clone(), keys[2].clone()]);
    assert!(retry > 0);
}

#[test]
#[serial]
fn inspect_answers_on_the_owner_and_a_readonly_replica_moved_elsewhere() {
    let cluster = Cluster::for_test();
    let key = cluster.key("inspect:me");
    let mut cc = cluster.conn();
    assert_eq!(absorb(&mut cc, &key, 100, NO_REFILL, Some(30)), 70);
    let inspect = |c: &mut dyn redis::ConnectionLike| -> redis::RedisResult<Vec<i64>> {
        redis::cmd("SHIELD.inspect")
            .arg(&key)
            .arg(100)
            .arg(NO_REFILL)
            .query(c)
    };
    assert_eq!(inspect(&mut cc).unwrap()[..2], [70, 100]);
    let slot = cluster.server_keyslot(&key);
    let owner = cluster.owner_of_slot(slot);
    let mut oc = cluster.conn_to(&owner);
    assert_eq!(wait_replicas(&mut oc, 1), 1);
    for replica in cluster.replicas_of(&owner.id) {
        let mut rc = cluster.replica_conn(&replica);
        assert_eq!(
            inspect(&mut rc).unwrap()[..2],
            [70, 100],
            "READONLY replica {}",
            replica.addr()
        );
        // Without READONLY, the replica redirects to its master.
        let err = inspect(&mut cluster.conn_to(&replica)).unwrap_err();
        assert_eq!(
            err.redirect_node(),
            Some((owner.addr().as_str(), slot)),
            "{err}"
        );
    }
    for m in cluster.masters().iter().filter(|m| m.id != owner.id) {
        let err = inspect(&mut cluster.conn_to(m)).unwrap_err();
        assert_eq!(
            err.redirect_node(),
            Some((owner.addr().as_str(), slot)),
            "{err}"
        );
    }
    // Inspecting wrote nothing: absorb still sees 70.
    assert_eq!(absorb(&mut cc, &key, 100, NO_REFILL, None), 69);
}

// ---------------------------------------------------------------------------
// The harness itself and docker-compose.cluster.yml
// ---------------------------------------------------------------------------

#[test]
fn cluster_nodes_lines_are_parsed() {
    let text = "\
07c3 127.0.0.1:30004@40004 slave e0c8 0 1795564915306 1 connected\n\
e0c8 127.0.0.1:30001@40001,host-a myself,master - 0 0 1 connected 0-5460 [5461->-e8d3]\n\
e8d3 127.0.0.1:30002@40002 master,fail? - 0 1795564915306 2 connected 5461 5462-10922\n";
    let nodes = parse_cluster_nodes(text);
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0].master_id.as_deref(), Some("e0c8"));
    assert!(!nodes[0].is_master() && !nodes[0].myself);
    assert_eq!(
        (nodes[1].host.as_str(), nodes[1].port),
        ("127.0.0.1", 30001)
    );
    assert!(nodes[1].myself && nodes[1].is_master() && !nodes[1].is_failing());
    assert_eq!(nodes[1].slots, [(0, 5460)]);
    assert!(nodes[2].is_failing());
    assert_eq!(nodes[2].slots, [(5461, 5461), (5462, 10922)]);
    assert_eq!(nodes[2].slot_count(), 10922 - 5461 + 1);
    // Hash slots, including the hash-tag rules (values from CLUSTER KEYSLOT).
    assert_eq!(key_slot(b"a"), 15495);
    assert_eq!(key_slot(b"{u}b"), key_slot(b"u"));
}

/// The node options of docker-compose.cluster.yml are those of the local
/// harness: both take them from cluster-node.conf, and the compose file adds
/// nothing but the port and the module per node.
#[test]
fn docker_compose_nodes_use_the_same_options_as_the_harness() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose = std::fs::read_to_string(root.join("docker-compose.cluster.yml")).unwrap();
    let conf = node_conf_options();
    let get = |name: &str| {
        conf.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    // What the tests rely on.
    assert_eq!(get("cluster-enabled"), Some("yes"));
    assert_eq!(get("appendonly"), Some("yes"));
    assert!(get("cluster-node-timeout").is_some());
    assert!(get("port").is_none() && get("dir").is_none() && get("loadmodule").is_none());
    assert_eq!(node_conf_path(), root.join("cluster-node.conf"));

    // The compose file mounts that file read-only, and the module read-only.
    let conf_in_container = "/redis-shield/cluster-node.conf";
    let module_in_container = "/redis-shield/libredis_shield.so";
    assert!(compose.contains(&format!("./cluster-node.conf:{conf_in_container}:ro")));
    assert!(compose.contains(&format!(
        "./target/release/libredis_shield.so:{module_in_container}:ro"
    )));
    assert!(compose.contains("network_mode: host"));

    // Six node services, ports 7001-7006, each started as
    // `redis-server <conf> --port <port> --loadmodule <module>` and nothing else.
    let commands: Vec<&str> = compose
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("command: [\"redis-server\""))
        .collect();
    assert_eq!(commands.len(), NODES, "{commands:?}");
    for (i, port) in (7001..=7006).enumerate() {
        assert!(
            compose.contains(&format!("\n  node-{port}:\n")),
            "service node-{port}"
        );
        assert_eq!(
            commands[i],
            format!(
                "command: [\"redis-server\", \"{conf_in_container}\", \"--port\", \"{port}\", \
                 \"--loadmodule\", \"{module_in_container}\"]"
            )
        );
    }
    // The one-shot service creates the cluster from those six nodes.
    let addrs: Vec<String> = (7001..=7006).map(|p| format!("127.0.0.1:{p}")).collect();
    assert!(
        compose.contains(&format!("--cluster create {}", addrs.join(" "))),
        "cluster create command"
    );
    assert!(compose.contains("--cluster-replicas 1 --cluster-yes"));

    // And the file is valid YAML with that structure.
    let check = r#"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
nodes = [f"node-{p}" for p in range(7001, 7007)]
assert sorted(services) == sorted(nodes + ["cluster-create"]), sorted(services)
for name in nodes + ["cluster-create"]:
    s = services[name]
    assert s["network_mode"] == "host", name
    assert s["image"], name
for name in nodes:
    s = services[name]
    assert s["command"][:3] == ["redis-server", "/redis-shield/cluster-node.conf", "--port"], s
    assert s["command"][3] == name[5:], s
    assert all(v.endswith(":ro") for v in s["volumes"]), s
assert services["cluster-create"]["restart"] == "no"
print("docker-compose.cluster.yml: valid YAML,", len(services), "services")
"#;
    let file = root.join("docker-compose.cluster.yml");
    let has_yaml = std::process::Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_yaml,
        "python3 with PyYAML is needed to parse docker-compose.cluster.yml: \
         `python3 -m pip install pyyaml` (or apt-get install python3-yaml)"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", check])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-compose.cluster.yml check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

// ---------------------------------------------------------------------------
// Atomic slot migration (Valkey 9+ CLUSTER MIGRATESLOTS, Redis 8.4+ CLUSTER MIGRATION)
// ---------------------------------------------------------------------------

/// Straight to the process's stderr: the test harness captures `eprintln!`
/// of passing tests, and a note about what did not run must be seen.
fn note(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("NOTE: {text}\n").as_bytes());
}

/// Sets its flag when dropped: client threads stop when the test ends,
/// also when it fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
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
    let (flavor, version) =
        common::server_version_info(&mut cluster.conn_to(&cluster.masters()[0]));
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

#[test]
#[serial]
fn atomic_slot_migration_under_load_keeps_every_bucket_exact() {
    let cluster = Cluster::own(
        "needs every node to load the module build under test (SHIELD_MODULE or this tree's)",
    );
    let kind = cluster.atomic_slot_migration();
    if matches!(kind, AtomicSlotMigration::Unsupported { .. }) {
        assert_no_atomic_slot_migration(&cluster, &kind, "the atomic slot migration under load");
        return;
    }

    // 50 buckets in one slot (hash tag): even ones big (1,000,000 tokens,
    // never empty during the test), odd ones small (1,000 tokens; every
    // tenth starts empty, the others have 10-149 left, most of which the
    // load takes, so that calls are denied too). NO_REFILL: not
    // one token refills during the test, so every count is exact.
    let tag = "asm";
    let slot = key_slot(tag.as_bytes());
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
            absorb(&mut cc, k, capacity(i), NO_REFILL, Some(granted[i])),
            (capacity(i) - granted[i]) as i64,
            "{k}"
        );
    }
    for (k, (cap, period, tokens)) in idle.iter().zip(idle_params) {
        assert_eq!(
            absorb(&mut cc, k, cap, period, Some(tokens)),
            (cap - tokens) as i64
        );
    }

    let source = cluster.owner_of_slot(slot);
    let target = cluster
        .masters()
        .into_iter()
        .find(|m| m.id != source.id)
        .unwrap();
    let mut src = cluster.conn_to(&source);
    let idle_before: Vec<_> = idle.iter().map(|k| bucket_state(&mut src, k)).collect();
    for (k, state) in idle.iter().zip(&idle_before) {
        assert!(state.0.is_some() && state.1 > 0, "{k}: {state:?}");
    }

    // Client threads, each with its own cluster connection, absorbing 1-5
    // tokens from random buckets of the slot until told to stop, counting per
    // bucket the tokens granted. Every error is recorded (and fails the test).
    let stop = Arc::new(AtomicBool::new(false));
    // Also stops them if the test fails before it does (their servers go).
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let mut conn = cluster.conn();
            let (keys, stop, calls, errors) = (
                Arc::clone(&keys),
                Arc::clone(&stop),
                Arc::clone(&calls),
                Arc::clone(&errors),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new();
                let mut got = vec![0u64; keys.len()];
                let mut denied = 0u64;
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let i = rng.below(keys.len() as u64) as usize;
                    let tokens = 1 + n % 5;
                    n += 1;
                    match try_absorb(&mut conn, &keys[i], capacity(i), NO_REFILL, Some(tokens)) {
                        Ok(left) if left >= 0 => got[i] += tokens,
                        Ok(-1) => denied += 1,
                        Ok(other) => errors
                            .lock()
                            .unwrap()
                            .push(format!("{}: reply {other}", keys[i])),
                        Err(e) => errors.lock().unwrap().push(format!("{}: {e}", keys[i])),
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                (got, denied)
            })
        })
        .collect();
    let calls_now = || calls.load(Ordering::Relaxed);
    let wait_calls = |n: u64, what: &str| {
        let target = calls_now() + n;
        wait_until(Duration::from_secs(60), what, || calls_now() >= target);
    };

    wait_calls(300, "load before the migration");
    let calls_before = calls_now();
    let mut calls_streamed = 0;
    let mut tgt = cluster.conn_to(&target);
    let migration = cluster.migrate_slot_atomically_holding(slot, &target, || {
        // The source still serves the slot and streams each write to the
        // target, which does not serve the slot yet: it redirects to the
        // source (probed with a call that is always denied: it writes nothing).
        let streamed_from = calls_now();
        wait_calls(500, "load while the migration streams the slot");
        calls_streamed = calls_now() - streamed_from;
        let err = try_absorb(
            &mut tgt,
            &keys[0],
            capacity(0),
            NO_REFILL,
            Some(capacity(0) + 1),
        )
        .expect_err("the importing target must not serve the slot");
        assert_eq!(
            err.redirect_node(),
            Some((source.addr().as_str(), slot)),
            "{err}"
        );
    });
    let calls_during = calls_now() - calls_before;
    wait_calls(300, "load after the migration");
    stop.store(true, Ordering::Relaxed);
    let mut denied = 0;
    for t in threads {
        let (got, d) = t.join().expect("client thread");
        for (i, g) in got.into_iter().enumerate() {
            granted[i] += g;
        }
        denied += d;
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "clients saw {} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
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
        calls_now(),
        migration.source_status,
        migration.target_status
    );
    assert_eq!(cluster.owner_of_slot(slot).id, target.id);

    // Every key is on the target; the source deletes its copies.
    let count = |c: &mut redis::Connection| -> u64 {
        redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query(c)
            .unwrap()
    };
    let mut tgt = cluster.conn_to(&target);
    assert_eq!(count(&mut tgt), (keys.len() + idle.len()) as u64);
    wait_until(
        Duration::from_secs(60),
        "the source to drop the slot's keys",
        || count(&mut src) == 0,
    );

    // Idle buckets: the same value and absolute expiry, to the millisecond.
    for ((k, before), (cap, period, tokens)) in idle.iter().zip(&idle_before).zip(idle_params) {
        assert_eq!(&bucket_state(&mut tgt, k), before, "{k} on the target");
        // What it holds now: what was left plus the refill since (less than
        // one token for all but the 1,000,000-per-hour bucket).
        let inspected = inspect(&mut tgt, k, cap, period);
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
        let inspected = inspect(&mut tgt, k, cap, NO_REFILL);
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
    assert_eq!(wait_replicas(&mut tgt, replicas.len()), replicas.len());
    for r in &replicas {
        let mut rc = cluster.replica_conn(r);
        for k in keys.iter().chain(&idle) {
            assert_eq!(
                bucket_state(&mut rc, k),
                bucket_state(&mut tgt, k),
                "{k} on replica {}",
                r.addr()
            );
        }
    }

    // And the buckets go on from there through the cluster client: `left`
    // more tokens can be taken, not `left + 1`.
    for (i, k) in keys.iter().enumerate() {
        let (cap, left) = (capacity(i), capacity(i) - granted[i]);
        assert_eq!(
            absorb(&mut cc, k, cap, NO_REFILL, Some(left + 1)),
            -1,
            "{k} holds more than {left}"
        );
        if left > 0 {
            assert_eq!(
                absorb(&mut cc, k, cap, NO_REFILL, Some(left)),
                0,
                "{k} holds less than {left}"
            );
        }
    }
}

/// Valkey asks each module whether its keys may move by atomic slot
/// migration; before redis-shield said yes (its Valkey option), `CLUSTER
/// MIGRATESLOTS` answered "The module shield does not support atomic slot
/// migrations" on the source (and the target refused the job the same way).
#[test]
#[serial]
fn atomic_slot_migration_is_not_refused_by_the_module() {
    let cluster = Cluster::own(
        "needs every node to load the module build under test (SHIELD_MODULE or this tree's)",
    );
    let kind = cluster.atomic_slot_migration();
    if matches!(kind, AtomicSlotMigration::Unsupported { .. }) {
        assert_no_atomic_slot_migration(&cluster, &kind, "the atomic slot migration check");
        return;
    }
    for node in cluster.topology() {
        let modules: Value = redis::cmd("MODULE")
            .arg("LIST")
            .query(&mut cluster.conn_to(&node))
            .unwrap();
        let mut words = vec![];
        flatten(&modules, &mut words);
        assert!(
            words.iter().any(|w| w == "shield"),
            "{}: {words:?}",
            node.addr()
        );
    }
    let key = cluster.key("{asm-accepted}:bucket");
    let slot = key_slot(key.as_bytes());
    let mut cc = cluster.conn();
    assert_eq!(absorb(&mut cc, &key, 100, NO_REFILL, Some(30)), 70);
    let source = cluster.owner_of_slot(slot);
    let before = bucket_state(&mut cluster.conn_to(&source), &key);
    let target = cluster
        .masters()
        .into_iter()
        .find(|m| m.id != source.id)
        .unwrap();
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
    assert_eq!(bucket_state(&mut cluster.conn_to(&target), &key), before);
    assert_eq!(absorb(&mut cc, &key, 100, NO_REFILL, None), 69);
}
