//! Smoke tests of the test kit itself (testkit/, package shield-testkit).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use shield_testkit::{server_version_info, wait_until, Pair, Server, ServerOptions};
use std::collections::HashMap;

#[test]
fn server_starts_without_module() {
    let server = Server::start(ServerOptions::default().without_module());
    let mut c = server.conn();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let (flavor, version) = server_version_info(&mut c);
    eprintln!(
        "server under test: {flavor} {version} (pid {:?}, port {})",
        server.pid(),
        server.port()
    );
    assert!(flavor == "redis" || flavor == "valkey");
    assert!(!version.is_empty());
}

#[test]
fn server_starts_with_module_loaded() {
    let server = Server::start(ServerOptions::default());
    let mut c = server.conn();
    let modules: Vec<HashMap<String, redis::Value>> =
        redis::cmd("MODULE").arg("LIST").query(&mut c).unwrap();
    let names: Vec<String> = modules
        .iter()
        .filter_map(|m| redis::from_redis_value_ref(m.get("name")?).ok())
        .collect();
    assert!(
        names.iter().any(|n| n == "shield"),
        "MODULE LIST: {names:?}"
    );
}

#[test]
fn restart_keeps_data_with_aof() {
    let mut server = Server::start(ServerOptions::default().without_module().appendonly(true));
    let mut c = server.conn();
    let _: () = redis::cmd("SET")
        .arg("harness:key")
        .arg("kept")
        .query(&mut c)
        .unwrap();
    let old_pid = server.pid();
    server.restart();
    assert_ne!(server.pid(), old_pid, "restart must start a new process");
    let mut c = server.conn();
    let v: Option<String> = redis::cmd("GET").arg("harness:key").query(&mut c).unwrap();
    assert_eq!(v.as_deref(), Some("kept"), "log:\n{}", server.log_tail());
}

#[test]
fn replica_syncs_from_master() {
    let Pair { master, replica } = Pair::start(
        ServerOptions::default().without_module(),
        ServerOptions::default().without_module(),
    );
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut master.conn())
        .unwrap();
    let mut rc = replica.conn();
    wait_until(
        std::time::Duration::from_secs(10),
        "key to replicate",
        || {
            redis::cmd("GET")
                .arg("k")
                .query::<Option<String>>(&mut rc)
                .unwrap()
                .is_some()
        },
    );
}
