//! Moving a slot under load. [`Load`]: client threads, each with its own
//! cluster connection, absorbing tokens from random buckets of the slot until
//! told to stop, counting per bucket the tokens granted (every error is
//! recorded, and fails the test when the load stops); and the checks after
//! the move.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redis::cluster::ClusterConnection;
use shield_testkit::{wait_until, Cluster, Rng, ShieldCommands};

use crate::NO_REFILL;

/// Sets its flag when dropped: client threads stop when the test ends,
/// also when it fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Tokens granted per bucket, and the number of denied calls, of one thread.
type Tally = (Vec<u64>, u64);

pub struct Load {
    calls: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<Tally>>,
    /// Also stops the threads if the test fails before it does (their servers go).
    stop: StopOnDrop,
}

impl Load {
    /// Start `threads` client threads on `keys` (bucket `i` has capacity
    /// `capacity(i)` and no refill). Thread `t` asks for `1 + n % max_tokens`
    /// tokens on its `n`-th call (`n` from `t`), of a random bucket.
    pub fn start(
        cluster: &Cluster,
        keys: &Arc<Vec<String>>,
        capacity: fn(usize) -> u64,
        threads: u64,
        max_tokens: u64,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut rng = Rng::new();
        let threads = (0..threads)
            .map(|t| {
                let mut conn = cluster.conn();
                let mut rng = rng.split();
                let (keys, stop, calls, errors) = (
                    Arc::clone(keys),
                    Arc::clone(&stop),
                    Arc::clone(&calls),
                    Arc::clone(&errors),
                );
                std::thread::spawn(move || {
                    let mut got = vec![0u64; keys.len()];
                    let mut denied = 0u64;
                    let mut n = t;
                    while !stop.load(Ordering::Relaxed) {
                        let i = rng.below(keys.len() as u64) as usize;
                        let tokens = 1 + n % max_tokens;
                        n += 1;
                        match conn.try_absorb(&keys[i], capacity(i), NO_REFILL, Some(tokens)) {
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
        Load {
            calls,
            errors,
            threads,
            stop: StopOnDrop(stop),
        }
    }

    /// Calls made so far, by all threads.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Wait until the threads have made `n` more calls.
    pub fn wait_calls(&self, n: u64, what: &str) {
        let target = self.calls() + n;
        wait_until(Duration::from_secs(60), what, || self.calls() >= target);
    }

    /// Stop the threads: the tokens granted per bucket and the denied calls,
    /// over all threads. Panics if any client saw an error.
    pub fn stop(self) -> Tally {
        self.stop.0.store(true, Ordering::Relaxed);
        let mut granted = vec![];
        let mut denied = 0;
        for t in self.threads {
            let (got, d) = t.join().expect("client thread");
            granted.resize(got.len(), 0);
            for (i, g) in got.into_iter().enumerate() {
                granted[i] += g;
            }
            denied += d;
        }
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "clients saw {} errors: {:?}",
            errors.len(),
            &errors[..errors.len().min(10)]
        );
        (granted, denied)
    }
}

/// `CLUSTER COUNTKEYSINSLOT slot` of one node.
pub fn keys_in_slot(c: &mut redis::Connection, slot: u16) -> u64 {
    redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(c)
        .unwrap()
}

/// Every bucket holds exactly what the tokens granted to the load leave
/// (`granted[i]` of `capacity(i)`, no refill), asked through the cluster
/// client: `left` more whole tokens can be taken, not `left + 1`.
pub fn assert_buckets_hold_the_rest(
    cc: &mut ClusterConnection,
    keys: &[String],
    capacity: fn(usize) -> u64,
    granted: &[u64],
) {
    for (i, k) in keys.iter().enumerate() {
        let cap = capacity(i);
        assert!(
            granted[i] <= cap,
            "{k}: granted {} > capacity {cap}",
            granted[i]
        );
        let left = cap - granted[i];
        assert_eq!(
            cc.absorb(k, cap, NO_REFILL, Some(left + 1)),
            -1,
            "{k} holds more than {left}"
        );
        if left > 0 {
            assert_eq!(
                cc.absorb(k, cap, NO_REFILL, Some(left)),
                0,
                "{k} holds less than {left}"
            );
        }
    }
}
