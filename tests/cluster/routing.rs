//! Routing: only the slot owner answers; hash tags; cluster pipelines.

use std::collections::BTreeSet;

use redis::Value;
use serial_test::serial;
use shield_testkit::{absorb_cmd, key_slot, Cluster, Rng, ShieldCommands};

use crate::{dbsize, shield_calls, two_keys_in_one_slot, NO_REFILL};

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
            let err = conns[j]
                .try_absorb(&key, 10, NO_REFILL, None)
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
        assert_eq!(conns[owner].absorb(&key, 10, NO_REFILL, None), 9);
        assert_eq!(cc.absorb(&key, 10, NO_REFILL, None), 8);
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
    let (api, web, slot) = two_keys_in_one_slot(&cluster, "user:123", "api", "web");
    assert_eq!(slot, cluster.server_keyslot("{user:123}"));
    assert_eq!(slot, key_slot(b"user:123"));

    // A cluster pipeline: both keys go to the same node in one round trip.
    let mut cc = cluster.conn();
    let replies: Vec<i64> = redis::cluster::cluster_pipe()
        .add_command(absorb_cmd(&api, 100, NO_REFILL, Some(10)))
        .add_command(absorb_cmd(&web, 5, NO_REFILL, None))
        .add_command(absorb_cmd(&api, 100, NO_REFILL, None))
        .add_command(absorb_cmd(&web, 5, NO_REFILL, Some(5)))
        .query(&mut cc)
        .unwrap();
    assert_eq!(replies, [90, 4, 89, -1]);

    // One slot, so also one atomic MULTI/EXEC on the owner.
    let owner = cluster.owner_of_slot(slot);
    let mut o = cluster.conn_to(&owner);
    let replies: Vec<i64> = redis::pipe()
        .atomic()
        .add_command(absorb_cmd(&api, 100, NO_REFILL, None))
        .add_command(absorb_cmd(&web, 5, NO_REFILL, None))
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
            p.add_command(absorb_cmd(key, cap, NO_REFILL, Some(tokens)));
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
