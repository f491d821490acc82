//! An admitted absorb behaves like a native string write: keyspace events,
//! WATCH, client-side caching, `OOM` under `maxmemory`. A denied one is not
//! a write. Through both engines (the module; the Functions library on a
//! server without the module, whose write is a native `SET ... PXAT`). And a
//! restricted ACL user can run the SHIELD commands and nothing else (the
//! module's commands only).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use redis::Value;
use shield_testkit::functions::Engine;
use shield_testkit::{engine_tests, Server, ServerOptions, ShieldCommands};

engine_tests!(
    admitted_calls_fire_set_and_expire_events_denied_calls_none,
    watch_is_invalidated_by_admitted_calls_only,
    client_side_caching_is_invalidated,
    a_full_server_refuses_absorbs_with_oom_and_still_answers_inspect,
);

fn admitted_calls_fire_set_and_expire_events_denied_calls_none(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    c.config_set("notify-keyspace-events", "KEA");
    let mut sub = s.conn();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("__keyspace@0__:ev").unwrap();

    assert_eq!(
        engine.absorb(&mut c, "ev", 2, 1_000_000, Some(2)),
        0,
        "{engine}"
    );
    assert_eq!(
        engine.absorb(&mut c, "ev", 2, 1_000_000, None),
        -1,
        "{engine}"
    );
    let _ = engine.inspect(&mut c, "ev", 2, 1_000_000);
    // A marker written after the denied call: the next event must be it.
    let _: () = redis::cmd("DEL").arg("ev").query(&mut c).unwrap();

    let mut events = Vec::new();
    while events.last().map(String::as_str) != Some("del") {
        let msg = pubsub
            .get_message()
            .unwrap_or_else(|e| panic!("{engine}: keyspace event after {events:?}: {e}"));
        events.push(msg.get_payload::<String>().unwrap());
    }
    assert_eq!(events, ["set", "expire", "del"], "{engine}");
}

fn watch_is_invalidated_by_admitted_calls_only(engine: Engine) {
    let s = engine.start_server();
    let mut watcher = s.conn();
    let mut other = s.conn();
    assert_eq!(
        engine.absorb(&mut other, "w", 2, 1_000_000, Some(1)),
        1,
        "{engine}"
    );

    let run_watched = |watcher: &mut redis::Connection, other: &mut redis::Connection, tokens| {
        let _: () = redis::cmd("WATCH").arg("w").query(watcher).unwrap();
        let reply = engine.absorb(other, "w", 2, 1_000_000, Some(tokens));
        let exec: Value = redis::pipe().atomic().cmd("PING").query(watcher).unwrap();
        (reply, exec)
    };
    // Denied: the transaction still runs.
    let (reply, exec) = run_watched(&mut watcher, &mut other, 2);
    assert_eq!(reply, -1, "{engine}");
    assert_ne!(
        exec,
        Value::Nil,
        "{engine}: a denied call invalidated WATCH"
    );
    // Admitted: the transaction is aborted, as after a native SET.
    let (reply, exec) = run_watched(&mut watcher, &mut other, 1);
    assert_eq!(reply, 0, "{engine}");
    assert_eq!(
        exec,
        Value::Nil,
        "{engine}: an admitted call did not invalidate WATCH"
    );
}

fn client_side_caching_is_invalidated(engine: Engine) {
    let s = engine.start_server();
    let mut reader = s.conn();
    let mut inval = s.conn();
    let mut writer = s.conn();
    let inval_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut inval).unwrap();
    inval
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut pubsub = inval.as_pubsub();
    pubsub.subscribe("__redis__:invalidate").unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("on")
        .arg("REDIRECT")
        .arg(inval_id)
        .query(&mut reader)
        .unwrap();
    assert_eq!(
        engine.absorb(&mut writer, "cached", 5, 60, None),
        4,
        "{engine}"
    );
    let _: Option<String> = redis::cmd("GET").arg("cached").query(&mut reader).unwrap();
    assert_eq!(
        engine.absorb(&mut writer, "cached", 5, 60, None),
        3,
        "{engine}"
    );
    let msg = pubsub
        .get_message()
        .unwrap_or_else(|e| panic!("{engine}: invalidation message: {e}"));
    let keys: Vec<String> = msg.get_payload().unwrap();
    assert_eq!(keys, ["cached"], "{engine}");
}

/// Under `maxmemory` (policy `noeviction`) a full server refuses an absorb
/// with `OOM` (the module's commands are flagged `deny-oom`, and so is an
/// `FCALL` of a function without `no-writes`): not admitted, nothing
/// written. Inspect still answers.
fn a_full_server_refuses_absorbs_with_oom_and_still_answers_inspect(engine: Engine) {
    let s = engine.start_server();
    let mut c = s.conn();
    assert_eq!(engine.absorb(&mut c, "k", 5, 60, None), 4, "{engine}");
    let before = c.stored("k");
    c.config_set("maxmemory-policy", "noeviction");
    c.config_set("maxmemory", "1");
    let err = engine.try_absorb(&mut c, "k", 5, 60, None).unwrap_err();
    assert_eq!(err.code(), Some("OOM"), "{engine}: {err}");
    let err = engine
        .try_absorb_all(&mut c, &[("{a}x", 5, 60, 1), ("{a}y", 5, 60, 1)])
        .unwrap_err();
    assert_eq!(err.code(), Some("OOM"), "{engine}: {err}");
    assert_eq!(engine.inspect(&mut c, "k", 5, 60)[..2], [4, 5], "{engine}");
    c.config_set("maxmemory", "0");
    assert_eq!(c.stored("k"), before, "{engine}");
    let n: i64 = redis::cmd("EXISTS")
        .arg(&["{a}x", "{a}y"])
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0, "{engine}");
    assert_eq!(engine.absorb(&mut c, "k", 5, 60, None), 3, "{engine}");
}

/// The README's ACL line names the module's commands; the library is called
/// through `FCALL`/`FCALL_RO`, which other rules govern.
#[test]
fn a_restricted_acl_user_runs_shield_commands_and_nothing_else_module_only() {
    let s = Server::start(ServerOptions::default());
    let mut admin = s.conn();
    // The README's line: it works on Redis 7.0, which cannot put module
    // commands in ACL categories.
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "limiter",
                "reset",
                "on",
                ">s3cret",
                "~rl:*",
                "-@all",
                "+shield.absorb",
                "+shield.absorball",
                "+shield.inspect",
            ][..],
        )
        .query(&mut admin)
        .unwrap();
    let client =
        redis::Client::open(format!("redis://limiter:s3cret@127.0.0.1:{}/", s.port())).unwrap();
    let mut c = client.get_connection().unwrap();
    assert_eq!(c.absorb("rl:user:1", 5, 60, None), 4);
    let all: Value = redis::cmd("SHIELD.absorball")
        .arg(&["rl:a", "5", "60", "1", "rl:b", "5", "60", "1"][..])
        .query(&mut c)
        .unwrap();
    assert!(matches!(all, Value::Array(_)), "{all:?}");
    let view: Vec<i64> = redis::cmd("SHIELD.inspect")
        .arg(&["rl:user:1", "5", "60"][..])
        .query(&mut c)
        .unwrap();
    assert_eq!(view[0], 4);
    let noperm = |c: &mut redis::Connection, cmd: &mut redis::Cmd| {
        let e = cmd.query::<Value>(c).unwrap_err();
        assert_eq!(e.code(), Some("NOPERM"), "{e}");
    };
    noperm(&mut c, redis::cmd("GET").arg("rl:user:1"));
    noperm(&mut c, redis::cmd("SET").arg("rl:user:1").arg("x"));
    noperm(&mut c, redis::cmd("DEL").arg("rl:user:1"));
    noperm(&mut c, &mut redis::cmd("FLUSHALL"));
    // Keys outside the user's pattern are refused too.
    noperm(
        &mut c,
        redis::cmd("SHIELD.absorb").arg("other").arg(5).arg(60),
    );
    noperm(
        &mut c,
        redis::cmd("SHIELD.absorball").arg(&["rl:a", "5", "60", "1", "x", "5", "60", "1"][..]),
    );
}
