//! The module on servers configured the way real ones are: `MODULE UNLOAD`,
//! category ACL rules, eviction policies, diskless replica loading.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use shield_testkit::{
    info_field, server_version_info, wait_until, Pair, Server, ServerOptions, ShieldCommands,
};

fn module_cmd() -> ServerOptions {
    ServerOptions::default()
        .arg("--enable-module-command")
        .arg("yes")
}

fn unload_error(c: &mut redis::Connection) -> String {
    let err = redis::cmd("MODULE")
        .arg("UNLOAD")
        .arg("shield")
        .query::<()>(c)
        .expect_err("MODULE UNLOAD must be refused");
    err.to_string()
}

/// A `SHIELD.absorb` queued in `MULTI` ran after `MODULE UNLOAD` freed the
/// command, and the server died with SIGSEGV. The module refuses to unload.
#[test]
fn module_unload_is_refused_while_a_transaction_holds_a_command() {
    let s = Server::start(module_cmd());
    let mut a = s.conn();
    let mut b = s.conn();
    let _: () = redis::cmd("MULTI").query(&mut a).unwrap();
    let queued: String = redis::cmd("SHIELD.absorb")
        .arg("k")
        .arg(10)
        .arg(10)
        .query(&mut a)
        .unwrap();
    assert_eq!(queued, "QUEUED");
    let err = unload_error(&mut b);
    assert!(err.contains("Error unloading module"), "{err}");
    assert!(
        s.log().contains("MODULE UNLOAD refused"),
        "the log says why:\n{}",
        s.log_tail()
    );
    let replies: Vec<i64> = redis::cmd("EXEC").query(&mut a).unwrap();
    assert_eq!(replies, [9]);
    let modules: redis::Value = redis::cmd("MODULE").arg("LIST").query(&mut b).unwrap();
    assert!(format!("{modules:?}").contains("shield"), "{modules:?}");
    assert_eq!(b.absorb("k", 10, 10, None), 8);
}

/// A `SHIELD.absorb` held by `CLIENT PAUSE WRITE` ran after the unload when
/// the pause ended (a crash on Redis 8.2 and Valkey).
#[test]
fn module_unload_is_refused_while_a_paused_command_waits() {
    let s = Server::start(module_cmd());
    let mut b = s.conn();
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "20000", "WRITE"])
        .query(&mut b)
        .unwrap();
    let mut a = s.conn();
    let held = std::thread::spawn(move || a.absorb("p", 10, 10, None));
    wait_until(Duration::from_secs(10), "the absorb to be held", || {
        info_field(&b.info_section("clients"), "blocked_clients").as_deref() == Some("1")
    });
    let err = unload_error(&mut b);
    assert!(err.contains("Error unloading module"), "{err}");
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut b).unwrap();
    assert_eq!(held.join().expect("held client"), 9);
    assert_eq!(b.absorb("p", 10, 10, None), 8);
}

/// Where the server can put module commands in ACL categories (Redis 7.2+,
/// Valkey), the SHIELD commands are in those of their native peers and in
/// `@ratelimit`; Redis 7.0 cannot, and the README says to name them there.
#[test]
fn category_acl_rules_cover_the_commands() {
    let s = Server::start(ServerOptions::default());
    let mut admin = s.conn();
    let (flavor, version) = server_version_info(&mut admin);
    let has_categories = flavor == "valkey" || !version.starts_with("7.0.");
    let user = |name: &str, rules: &[&str]| {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(name)
            .arg(&["reset", "on", ">p", "~*"])
            .arg(rules)
            .query(&mut s.conn())
            .unwrap();
        let mut c = s.conn();
        let _: () = redis::cmd("AUTH").arg(name).arg("p").query(&mut c).unwrap();
        c
    };
    let run = |c: &mut redis::Connection, cmd: &str, args: &[&str]| -> Result<(), String> {
        redis::cmd(cmd)
            .arg(args)
            .query::<redis::Value>(c)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    // redis-rs words a NOPERM error as "NoPerm: ... no permissions ...".
    let denied = |r: &Result<(), String>| r.as_ref().is_err_and(|e| e.contains("no permissions"));
    let absorb_args = ["x", "5", "1"];
    let all_args = ["x", "5", "1", "1"];
    let inspect_args = ["x", "5", "1"];

    let mut nowrite = user("nowrite", &["+@all", "-@write"]);
    assert!(denied(&run(&mut nowrite, "SET", &["x", "1"])));
    let absorb_result = run(&mut nowrite, "SHIELD.absorb", &absorb_args);
    let all_result = run(&mut nowrite, "SHIELD.absorball", &all_args);
    assert_eq!(run(&mut nowrite, "SHIELD.inspect", &inspect_args), Ok(()));
    if has_categories {
        assert!(denied(&absorb_result), "-@write");
        assert!(denied(&all_result), "-@write");
        let exists: i64 = redis::cmd("EXISTS").arg("x").query(&mut admin).unwrap();
        assert_eq!(exists, 0, "nothing was written");

        // Only the limiter: +@ratelimit.
        let mut limiter = user("limiter", &["-@all", "+@ratelimit"]);
        assert_eq!(run(&mut limiter, "SHIELD.absorb", &absorb_args), Ok(()));
        assert_eq!(run(&mut limiter, "SHIELD.absorball", &all_args), Ok(()));
        assert_eq!(run(&mut limiter, "SHIELD.inspect", &inspect_args), Ok(()));
        assert!(denied(&run(&mut limiter, "GET", &["x"])));
        // Everything but the limiter: -@ratelimit.
        let mut other = user("other", &["+@all", "-@ratelimit"]);
        assert!(denied(&run(&mut other, "SHIELD.inspect", &inspect_args)));
        assert_eq!(run(&mut other, "GET", &["x"]), Ok(()));
        // Read-only users may inspect, not absorb.
        let mut reader = user("reader", &["-@all", "+@read"]);
        assert_eq!(run(&mut reader, "SHIELD.inspect", &inspect_args), Ok(()));
        assert!(denied(&run(&mut reader, "SHIELD.absorb", &absorb_args)));

        let members: Vec<String> = redis::cmd("ACL")
            .arg("CAT")
            .arg("ratelimit")
            .query(&mut admin)
            .unwrap();
        let mut members: Vec<String> = members.iter().map(|m| m.to_lowercase()).collect();
        members.sort();
        assert_eq!(
            members,
            [
                "cl.throttle",
                "gcra",
                "shield.absorb",
                "shield.absorball",
                "shield.inspect"
            ]
        );
    } else {
        // Redis 7.0: as README says, -@write does not stop them...
        assert_eq!(
            absorb_result,
            Ok(()),
            "Redis 7.0 has no categories for module commands"
        );
        assert_eq!(all_result, Ok(()));
        // ...so name them.
        let mut named = user(
            "named",
            &["+@all", "-@write", "-shield.absorb", "-shield.absorball"],
        );
        assert!(denied(&run(&mut named, "SHIELD.absorb", &absorb_args)));
        assert!(denied(&run(&mut named, "SHIELD.absorball", &all_args)));
        assert!(s
            .log()
            .contains("cannot put module commands in ACL categories"));
    }
}

fn eviction_field(c: &mut redis::Connection, name: &str) -> Option<String> {
    info_field(&c.info_section("shield"), &format!("shield_{name}"))
}

/// Under every evicting policy the module says that evictions can reset
/// buckets (INFO and a log warning); under `noeviction`, or with no
/// `maxmemory`, that they cannot. Where the server hands evicted keys to
/// modules, it counts the evicted buckets.
#[test]
fn evicting_policies_are_reported() {
    let s = Server::start(
        ServerOptions::default()
            .arg("--maxmemory-policy")
            .arg("allkeys-lru")
            .arg("--maxmemory")
            .arg("1gb"),
    );
    let mut c = s.conn();
    assert_eq!(
        eviction_field(&mut c, "maxmemory_policy").as_deref(),
        Some("allkeys-lru")
    );
    assert_eq!(
        eviction_field(&mut c, "evictions_can_reset_buckets").as_deref(),
        Some("1")
    );
    assert!(
        s.log()
            .contains("maxmemory-policy is allkeys-lru with maxmemory 1073741824"),
        "warning at load:\n{}",
        s.log_tail()
    );
    for (policy, evicting) in [
        ("noeviction", "0"),
        ("allkeys-random", "1"),
        ("volatile-lru", "1"),
        ("volatile-ttl", "1"),
        ("volatile-random", "1"),
        ("allkeys-lfu", "1"),
        ("volatile-lfu", "1"),
        ("noeviction", "0"),
    ] {
        c.config_set("maxmemory-policy", policy);
        assert_eq!(
            eviction_field(&mut c, "maxmemory_policy").as_deref(),
            Some(policy)
        );
        assert_eq!(
            eviction_field(&mut c, "evictions_can_reset_buckets").as_deref(),
            Some(evicting),
            "{policy}"
        );
    }
    assert!(s.log().contains("buckets can no longer be evicted"));
    // No maxmemory: nothing is ever evicted, whatever the policy.
    c.config_set("maxmemory", "0");
    c.config_set("maxmemory-policy", "allkeys-lru");
    assert_eq!(
        eviction_field(&mut c, "evictions_can_reset_buckets").as_deref(),
        Some("0")
    );

    // Under pressure: drained buckets are evicted, and each evicted one is
    // full again. Where the server reports evictions to modules, they are
    // counted.
    let used: u64 = info_field(&c.info_section("memory"), "used_memory")
        .and_then(|v| v.parse().ok())
        .expect("used_memory");
    c.config_set("maxmemory", &(used + 4 * 1024 * 1024).to_string());
    let mut pipe = redis::pipe();
    for i in 0..60_000 {
        pipe.cmd("SHIELD.absorb")
            .arg(format!("drained:{i}"))
            .arg(1)
            .arg(100_000);
        if i % 1000 == 999 {
            let _: Vec<redis::Value> = pipe.query(&mut c).unwrap();
            pipe = redis::pipe();
        }
    }
    let evicted: u64 = info_field(&c.info_section("stats"), "evicted_keys")
        .and_then(|v| v.parse().ok())
        .expect("evicted_keys");
    assert!(evicted > 0, "the test must cause evictions");
    let counted = eviction_field(&mut c, "buckets_evicted");
    let (flavor, version) = server_version_info(&mut c);
    if flavor == "redis" && version.starts_with("7.0.") {
        assert_eq!(
            counted, None,
            "Redis 7.0 does not hand evicted keys to modules"
        );
    } else {
        assert_eq!(
            counted,
            Some(evicted.to_string()),
            "every evicted key was a bucket"
        );
    }
    // The harm the warning is about: an evicted drained bucket admits again.
    let gone = (0..60_000)
        .map(|i| format!("drained:{i}"))
        .find(|k| c.stored(k).0.is_none())
        .expect("an evicted bucket");
    c.config_set("maxmemory", "0");
    assert_eq!(c.absorb(&gone, 1, 100_000, None), 0, "full again");
}

/// With the module loaded, a replica used to skip `repl-diskless-load
/// swapdb` ("modules that are not aware of async replication") and load
/// from disk. It now loads from the socket and ends byte-identical.
#[test]
fn a_replica_with_the_module_loads_diskless_with_swapdb() {
    let master = Server::start(ServerOptions::default());
    let mut m = master.conn();
    for i in 0..200 {
        m.absorb(format!("b{i}"), 10, 60, Some(1 + i % 10));
    }
    let replica = Server::start_replica(
        &master,
        ServerOptions::default()
            .arg("--repl-diskless-load")
            .arg("swapdb"),
    );
    let text = replica.log();
    assert!(
        !text.contains("Skipping diskless-load"),
        "diskless load skipped:\n{}",
        replica.log_tail()
    );
    assert!(
        text.contains("Loading DB in memory"),
        "no diskless load in the replica's log:\n{}",
        replica.log_tail()
    );
    let mut r = replica.conn();
    for i in 0..200 {
        let key = format!("b{i}");
        assert_eq!(r.stored(&key), m.stored(&key), "{key}");
    }
}

fn counter(c: &mut redis::Connection, name: &str) -> u64 {
    eviction_field(c, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("shield_{name}"))
}

/// `rejected_calls` of `SHIELD.absorb` in `INFO commandstats`.
fn rejected_by_server(c: &mut redis::Connection) -> u64 {
    // The server keeps the command's name as registered: cmdstat_SHIELD.absorb.
    c.info_section("commandstats")
        .lines()
        .find_map(|line| {
            let (name, stats) = line.split_once(':')?;
            name.eq_ignore_ascii_case("cmdstat_shield.absorb")
                .then(|| {
                    stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("rejected_calls=")?.parse().ok())
                })?
        })
        .unwrap_or(0)
}

/// `shield_calls` and `shield_errors` count the calls that reach the module;
/// the calls the server rejects before running it (too few arguments, NOPERM,
/// OOM, READONLY) are in neither, but in the server's `rejected_calls`.
#[test]
fn counters_count_the_calls_that_reach_the_module() {
    let Pair { master, replica } = Pair::with_module();
    let mut c = master.conn();
    let expect = |c: &mut redis::Connection, calls: u64, errors: u64, rejected: u64| {
        assert_eq!(
            (
                counter(c, "calls"),
                counter(c, "errors"),
                rejected_by_server(c)
            ),
            (calls, errors, rejected)
        );
    };
    let call = |c: &mut redis::Connection, args: &[&str]| {
        redis::cmd("SHIELD.absorb")
            .arg(args)
            .query::<redis::Value>(c)
            .map_err(|e| e.to_string())
    };
    assert!(call(&mut c, &["k", "5", "1"]).is_ok());
    expect(&mut c, 1, 0, 0);
    // Errors the module answers: arguments, too many of them, key type.
    assert!(call(&mut c, &["k", "x", "1"]).is_err());
    assert!(call(&mut c, &["k", "5", "1", "1", "WITHDETAILS", "x"]).is_err());
    expect(&mut c, 3, 2, 0);
    // Rejected by the server before the module runs.
    assert!(call(&mut c, &["k", "5"]).is_err(), "too few arguments");
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "nobody",
            "on",
            ">p",
            "~*",
            "+@all",
            "-shield.absorb",
        ])
        .query(&mut c)
        .unwrap();
    let mut nobody = master.conn();
    let _: () = redis::cmd("AUTH")
        .arg(&["nobody", "p"])
        .query(&mut nobody)
        .unwrap();
    assert!(call(&mut nobody, &["k", "5", "1"]).is_err(), "NOPERM");
    c.config_set("maxmemory", "1");
    let oom = call(&mut c, &["k", "5", "1"]);
    assert!(oom.as_ref().is_err_and(|e| e.contains("OOM")), "{oom:?}");
    c.config_set("maxmemory", "0");
    expect(&mut c, 3, 2, 3);
    let mut r = replica.conn();
    let readonly = call(&mut r, &["k", "5", "1"]);
    assert!(
        readonly
            .as_ref()
            .is_err_and(|e| e.contains("read only replica")),
        "{readonly:?}"
    );
    expect(&mut r, 0, 0, 1);
}
