//! Every reply and error of SHIELD.absorb on a live server, through both
//! engines: the module's command on a server with the module, and the
//! Functions library (`FCALL shield_absorb`) on a server without it. The
//! cases named `..._module_only` test what only the module has (`COMMAND
//! INFO`/`DOCS`, `INFO shield`, being called from a Lua script).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use redis::Value;
use shield_testkit::functions::{error_of, getkeys, Engine};
use shield_testkit::{
    engine_tests, info_field, keys_of_other_types, Server, ServerOptions, ShieldCommands,
    MALFORMED_NUMBERS,
};

engine_tests!(
    documented_example_on_a_fresh_key,
    default_tokens_is_one_and_more_than_capacity_is_denied,
    stored_value_and_expiry_are_the_documented_format,
    wrong_arity_is_the_standard_error,
    malformed_numbers_are_rejected_naming_the_argument_and_write_nothing,
    keys_of_other_types_get_wrongtype_and_are_untouched,
    strings_that_are_not_buckets_are_an_error_and_untouched,
    odd_but_valid_keys_work,
    getkeys_names_the_key,
    works_inside_multi,
);

fn server(engine: Engine) -> (Server, redis::Connection) {
    let s = engine.start_server();
    let c = s.conn();
    (s, c)
}

fn exists(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("EXISTS").arg(key).query(c).unwrap()
}

fn documented_example_on_a_fresh_key(engine: Engine) {
    let (_s, mut c) = server(engine);
    assert_eq!(
        engine.absorb(&mut c, "user123", 30, 60, Some(13)),
        17,
        "{engine}"
    );
    assert_eq!(
        engine.absorb(&mut c, "user123", 30, 60, Some(13)),
        4,
        "{engine}"
    );
    assert_eq!(
        engine.absorb(&mut c, "user123", 30, 60, Some(13)),
        -1,
        "{engine}"
    );
}

fn default_tokens_is_one_and_more_than_capacity_is_denied(engine: Engine) {
    let (_s, mut c) = server(engine);
    assert_eq!(engine.absorb(&mut c, "k", 3, 60, None), 2, "{engine}");
    assert_eq!(engine.absorb(&mut c, "big", 3, 60, Some(4)), -1, "{engine}");
    // A denied call on a missing key creates nothing.
    assert_eq!(exists(&mut c, "big"), 0, "{engine}");
    assert_eq!(engine.absorb(&mut c, "big", 3, 60, Some(3)), 0, "{engine}");
    assert_eq!(
        engine.absorb(&mut c, "big", 3, 60, Some(i64::MAX as u64)),
        -1,
        "{engine}"
    );
}

fn stored_value_and_expiry_are_the_documented_format(engine: Engine) {
    let (_s, mut c) = server(engine);
    let before: i64 = now_ms(&mut c);
    assert_eq!(
        engine.absorb(&mut c, "fmt", 30, 60, Some(13)),
        17,
        "{engine}"
    );
    let after: i64 = now_ms(&mut c);
    let value: String = redis::cmd("GET").arg("fmt").query(&mut c).unwrap();
    assert_eq!(value, "~0", "{engine}");
    // 13 tokens at 0.5 token/s refill in 26 s: the key expires when full.
    let expire: i64 = redis::cmd("PEXPIRETIME").arg("fmt").query(&mut c).unwrap();
    assert!(
        (before + 26_000..=after + 26_000).contains(&expire),
        "{engine}: {before} {expire} {after}"
    );
    // 3 tokens per 7 s: a token is 2333.33 ms, so the bucket is full again
    // 2/3 ms before the expiry millisecond: 2 ticks of 1/3 ms, stored with
    // the capacity they are counted in.
    assert_eq!(engine.absorb(&mut c, "frac", 3, 7, Some(1)), 2, "{engine}");
    let value: String = redis::cmd("GET").arg("frac").query(&mut c).unwrap();
    assert_eq!(value, "~2/3", "{engine}");
}

fn now_ms(c: &mut redis::Connection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(c).unwrap();
    secs * 1000 + micros / 1000
}

fn wrong_arity_is_the_standard_error(engine: Engine) {
    let (_s, mut c) = server(engine);
    let cases: [&[&[u8]]; 4] = [
        &[],
        &[b"k"],
        &[b"k", b"1"],
        &[b"k", b"1", b"1", b"1", b"WITHDETAILS", b"x"],
    ];
    for args in cases {
        let err = error_of(&mut c, &engine.absorb_args_cmd(args));
        assert!(
            err.to_lowercase().contains("wrong number of arguments"),
            "{engine} {args:?}: {err}"
        );
    }
    // A fifth argument after tokens can only be WITHDETAILS.
    assert_eq!(
        error_of(
            &mut c,
            &engine.absorb_args_cmd(&[b"k", b"1", b"1", b"1", b"1"])
        ),
        "ERR syntax error: the only option after tokens is WITHDETAILS",
        "{engine}"
    );
    assert_eq!(exists(&mut c, "k"), 0, "{engine}");
}

fn malformed_numbers_are_rejected_naming_the_argument_and_write_nothing(engine: Engine) {
    let (_s, mut c) = server(engine);
    for &b in MALFORMED_NUMBERS {
        for (pos, name) in [(2, "capacity"), (3, "period"), (4, "tokens")] {
            let mut args: Vec<&[u8]> = vec![b"victim", b"10", b"60", b"1"];
            args[pos - 1] = b;
            let err = error_of(&mut c, &engine.absorb_args_cmd(&args));
            assert_eq!(
                err,
                format!("ERR {name} is not a positive integer"),
                "{engine} {b:?}"
            );
        }
    }
    for (pos, name, max) in [
        (2, "capacity", "1000000000000000"),
        (3, "period", "10000000000"),
        (4, "tokens", "9223372036854775807"),
    ] {
        for big in [&b"99999999999999999999999999"[..], b"18446744073709551616"] {
            let mut args: Vec<&[u8]> = vec![b"victim", b"10", b"60", b"1"];
            args[pos - 1] = big;
            assert_eq!(
                error_of(&mut c, &engine.absorb_args_cmd(&args)),
                format!("ERR {name} is out of range (1 to {max})"),
                "{engine}"
            );
        }
    }
    assert_eq!(
        exists(&mut c, "victim"),
        0,
        "{engine}: a rejected call wrote the key"
    );
    // The largest accepted values work. The library's documented range is
    // capacity * period <= 8 * 10^12 (README, "Without the module"): its
    // largest limits are at that product, and the module's largest one is
    // the library's range error.
    match engine {
        Engine::Module => assert_eq!(
            engine.absorb(
                &mut c,
                "max",
                1_000_000_000_000_000,
                10_000_000_000,
                Some(1)
            ),
            999_999_999_999_999
        ),
        Engine::Library => {
            assert_eq!(
                engine.absorb(&mut c, "max", 8_000_000_000_000, 1, Some(1)),
                7_999_999_999_999
            );
            assert_eq!(engine.absorb(&mut c, "maxp", 1, 8_000_000_000, Some(1)), 0);
            let err = error_of(
                &mut c,
                &engine.absorb_args_cmd(&[b"wide", b"1000000000000000", b"10000000000"]),
            );
            assert!(
                err.contains("out of range for the redis-shield Functions library"),
                "{err}"
            );
            assert_eq!(exists(&mut c, "wide"), 0);
        }
    }
}

fn keys_of_other_types_get_wrongtype_and_are_untouched(engine: Engine) {
    let (_s, mut c) = server(engine);
    for key in keys_of_other_types(&mut c) {
        let err = error_of(
            &mut c,
            &engine.absorb_args_cmd(&[key.as_bytes(), b"10", b"60"]),
        );
        assert!(err.starts_with("WRONGTYPE"), "{engine} {key}: {err}");
    }
    let len: i64 = redis::cmd("LLEN").arg("list").query(&mut c).unwrap();
    assert_eq!(len, 1, "{engine}");
}

fn strings_that_are_not_buckets_are_an_error_and_untouched(engine: Engine) {
    let (_s, mut c) = server(engine);
    for (i, v) in [&b"hello"[..], b"", b"~", b"~x", b"1.5", b"\xff\x00"]
        .iter()
        .enumerate()
    {
        let key = format!("str{i}");
        let _: () = redis::cmd("SET").arg(&key).arg(*v).query(&mut c).unwrap();
        let err = error_of(
            &mut c,
            &engine.absorb_args_cmd(&[key.as_bytes(), b"10", b"60"]),
        );
        assert_eq!(
            err, "ERR the key holds a string that is not a redis-shield bucket",
            "{engine} {v:?}"
        );
        let still: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
        assert_eq!(still, *v, "{engine}");
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut c).unwrap();
        assert_eq!(ttl, -1, "{engine}");
    }
    // A 2.x value whose expiry was removed cannot be trusted: fail closed.
    assert_eq!(
        engine.absorb(&mut c, "persisted", 10, 60, Some(5)),
        5,
        "{engine}"
    );
    let _: () = redis::cmd("PERSIST")
        .arg("persisted")
        .query(&mut c)
        .unwrap();
    let err = error_of(
        &mut c,
        &engine.absorb_args_cmd(&[b"persisted", b"10", b"60"]),
    );
    assert!(
        err.starts_with("ERR the bucket key's expiry was changed"),
        "{engine}: {err}"
    );
}

fn odd_but_valid_keys_work(engine: Engine) {
    let (_s, mut c) = server(engine);
    let long = vec![b'k'; 10 * 1024];
    let binary: Vec<u8> = (0..=255u8).collect();
    for key in [&b""[..], &binary, &long, b"\r\n", b"{tag}x"] {
        for want in [1, 0, -1] {
            let got: i64 = engine
                .absorb_cmd(key, &[b"2", b"60"])
                .query(&mut c)
                .unwrap_or_else(|e| panic!("{engine} {key:?}: {e}"));
            assert_eq!(got, want, "{engine} {key:?}");
        }
    }
}

/// `COMMAND GETKEYS` finds the key: the module's key spec, the library's
/// declared key (what cluster clients route by).
fn getkeys_names_the_key(engine: Engine) {
    let (_s, mut c) = server(engine);
    let keys = getkeys(&mut c, &engine.absorb_cmd(b"the-key", &[b"1", b"1"]));
    assert_eq!(keys, vec!["the-key".to_string()], "{engine}");
}

/// The module's command flags, arity, key positions and docs (the library
/// is called through `FCALL`, whose own are the server's).
#[test]
fn command_info_flags_and_docs_module_only() {
    let (_s, mut c) = server(Engine::Module);
    let info = c.command_info("shield.absorb");
    let text = format!("{info:?}");
    for flag in ["write", "denyoom", "fast"] {
        assert!(text.contains(flag), "flag {flag} missing in {text}");
    }
    let Value::Array(outer) = info else {
        panic!("{info:?}")
    };
    let Some(Value::Array(entry)) = outer.first() else {
        panic!("{outer:?}")
    };
    // name, arity, flags, first key, last key, step
    assert_eq!(entry.get(1), Some(&Value::Int(-4)));
    assert_eq!(entry.get(3), Some(&Value::Int(1)));
    assert_eq!(entry.get(4), Some(&Value::Int(1)));
    assert_eq!(entry.get(5), Some(&Value::Int(1)));
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("shield.absorb")
        .query(&mut c)
        .unwrap();
    let docs = format!("{docs:?}");
    assert!(docs.contains("O(1)") && docs.contains("2.0.0"), "{docs}");
}

/// `INFO shield`: the library has no counters.
#[test]
fn info_section_counts_calls_module_only() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    assert_eq!(c.absorb("i", 5, 60, Some(3)), 2);
    assert_eq!(c.absorb("i", 5, 60, Some(3)), -1);
    let _ = c.absorb_err(&[b"i", b"x", b"60"]);
    let info = c.info_section("shield");
    let field = |f: &str| info_field(&info, f).unwrap_or_else(|| panic!("{f} in {info}"));
    assert_eq!(field("shield_calls"), "3");
    assert_eq!(field("shield_admitted"), "1");
    assert_eq!(field("shield_denied"), "1");
    assert_eq!(field("shield_errors"), "1");
    assert_eq!(field("shield_tokens_absorbed"), "3");
}

fn works_inside_multi(engine: Engine) {
    let (_s, mut c) = server(engine);
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .add_command(engine.absorb_typed_cmd("m", 3, 60, None, false))
        .add_command(engine.absorb_typed_cmd("m", 3, 60, None, false))
        .query(&mut c)
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    assert_eq!((a, b), (2, 1), "{engine}");
    assert_eq!(engine.absorb(&mut c, "m", 3, 60, None), 0, "{engine}");
}

/// From a Lua script: the server refuses `FCALL` inside scripts (it is
/// flagged `noscript`), so only the module's command can be called there.
#[test]
fn works_inside_a_lua_script_module_only() {
    let (_s, mut c) = server(Engine::Module);
    assert_eq!(c.absorb("m", 3, 60, None), 2);
    let n: i64 = redis::cmd("EVAL")
        .arg("return redis.call('SHIELD.absorb', KEYS[1], 3, 60)")
        .arg(1)
        .arg("m")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
}
