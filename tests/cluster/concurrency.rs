//! Concurrent clients on every master.

use std::collections::HashMap;
use std::sync::Arc;

use serial_test::serial;
use shield_testkit::{key_slot, Cluster, ShieldCommands};

use crate::NO_REFILL;

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
                        if conn.absorb(&keys[i], capacity, NO_REFILL, None) >= 0 {
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
        assert_eq!(cc.absorb(k, capacity, NO_REFILL, None), -1);
    }
}
