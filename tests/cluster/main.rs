// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
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
//! 2 s; see `shield_testkit::cluster`, testkit/src/cluster/). With it, the tests use that cluster, except
//! the two that must SIGKILL or restart a server process
//! (`sigkill_failover_...`, `master_restart_from_aof_...`), the two atomic
//! slot migration tests (`atomic_slot_migration_...`, which need every node to
//! run the module build under test) and the two `library_...` tests of
//! `functions`, which need nodes without the module: they always start
//! their own cluster and say so on stderr. The atomic slot migration tests
//! run the migration on Valkey 9+ (and Redis builds with `CLUSTER
//! MIGRATION`); elsewhere they check that the server has no such command and
//! print a NOTE.
//!
//! The tests run one at a time (`#[serial]`): each cluster is six processes,
//! and a loaded 2-core machine must not delay cluster heartbeats into false
//! failovers.
//!
//! Buckets that must not refill during a test use `NO_REFILL` as their period
//! (capacity tokens per ~32 years), so every expected answer is exact.
//!
//! One module per theme: `setup` (the module on every node, the kit's
//! parsing, docker-compose.cluster.yml), `routing`, `replication`,
//! `failover`, `resharding` (legacy `MIGRATE`), `atomic_migration`,
//! `persistence`, `concurrency`, `multi_bucket` (`SHIELD.absorball`),
//! `inspect`, `functions` (the Functions library: loaded by
//! `scripts/load-functions.sh` beside the module, and alone on a cluster
//! without the module); `load` holds the client threads that the
//! resharding tests run while they move a slot.

mod atomic_migration;
mod concurrency;
mod failover;
mod functions;
mod inspect;
mod load;
mod multi_bucket;
mod persistence;
mod replication;
mod resharding;
mod routing;
mod setup;

use redis::Value;
use shield_testkit::{info_field, Cluster, ShieldCommands};

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

/// Whether `MODULE LIST` of a node names the module.
fn module_listed(c: &mut redis::Connection) -> (bool, Vec<String>) {
    let modules: Value = redis::cmd("MODULE").arg("LIST").query(c).unwrap();
    let mut words = vec![];
    flatten(&modules, &mut words);
    (words.iter().any(|w| w == "shield"), words)
}

/// `name_a` and `name_b` under the hash tag `{tag}`: two keys of this
/// cluster handle in one slot, which the server confirms. Returns them and
/// their slot.
fn two_keys_in_one_slot(
    cluster: &Cluster,
    tag: &str,
    name_a: &str,
    name_b: &str,
) -> (String, String, u16) {
    let a = cluster.key(&format!("{{{tag}}}:{name_a}"));
    let b = cluster.key(&format!("{{{tag}}}:{name_b}"));
    let slot = cluster.server_keyslot(&a);
    assert_eq!(cluster.server_keyslot(&b), slot, "{a} and {b}");
    (a, b, slot)
}

fn shield_calls(c: &mut redis::Connection) -> u64 {
    info_field(&c.info_section("shield"), "shield_calls")
        .and_then(|v| v.parse().ok())
        .expect("shield_calls in INFO shield")
}

fn dbsize(c: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(c).expect("DBSIZE")
}
