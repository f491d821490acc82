//! Every reply and error of SHIELD.absorb on a live server.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use redis::Value;
use shield_testkit::{
    info_field, keys_of_other_types, Server, ServerOptions, ShieldCommands, MALFORMED_NUMBERS,
};

fn server() -> (Server, redis::Connection) {
    let s = Server::start(ServerOptions::default());
    let c = s.conn();
    (s, c)
}

#[test]
fn documented_example_on_a_fresh_key() {
    let (_s, mut c) = server();
    assert_eq!(c.absorb("user123", 30, 60, Some(13)), 17);
    assert_eq!(c.absorb("user123", 30, 60, Some(13)), 4);
    assert_eq!(c.absorb("user123", 30, 60, Some(13)), -1);
}

#[test]
fn default_tokens_is_one_and_more_than_capacity_is_denied() {
    let (_s, mut c) = server();
    assert_eq!(c.absorb("k", 3, 60, None), 2);
    assert_eq!(c.absorb("big", 3, 60, Some(4)), -1);
    // A denied call on a missing key creates nothing.
    let exists: i64 = redis::cmd("EXISTS").arg("big").query(&mut c).unwrap();
    assert_eq!(exists, 0);
    assert_eq!(c.absorb("big", 3, 60, Some(3)), 0);
    assert_eq!(c.absorb("big", 3, 60, Some(i64::MAX as u64)), -1);
}

#[test]
fn stored_value_and_expiry_are_the_documented_format() {
    let (_s, mut c) = server();
    let before: i64 = now_ms(&mut c);
    assert_eq!(c.absorb("fmt", 30, 60, Some(13)), 17);
    let after: i64 = now_ms(&mut c);
    let value: String = redis::cmd("GET").arg("fmt").query(&mut c).unwrap();
    assert_eq!(value, "~0");
    // 13 tokens at 0.5 token/s refill in 26 s: the key expires when full.
    let expire: i64 = redis::cmd("PEXPIRETIME").arg("fmt").query(&mut c).unwrap();
    assert!(
        (before + 26_000..=after + 26_000).contains(&expire),
        "{before} {expire} {after}"
    );
    // 3 tokens per 7 s: a token is 2333.33 ms, so the bucket is full again
    // 2/3 ms before the expiry millisecond: 2 ticks of 1/3 ms, stored with
    // the capacity they are counted in.
    assert_eq!(c.absorb("frac", 3, 7, Some(1)), 2);
    let value: String = redis::cmd("GET").arg("frac").query(&mut c).unwrap();
    assert_eq!(value, "~2/3");
}

fn now_ms(c: &mut redis::Connection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(c).unwrap();
    secs * 1000 + micros / 1000
}

#[test]
fn wrong_arity_is_the_standard_error() {
    let (_s, mut c) = server();
    let cases: [&[&str]; 4] = [
        &[],
        &["k"],
        &["k", "1"],
        &["k", "1", "1", "1", "WITHDETAILS", "x"],
    ];
    for args in cases {
        let err = redis::cmd("SHIELD.absorb")
            .arg(args)
            .query::<Value>(&mut c)
            .unwrap_err();
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("wrong number of arguments"),
            "{args:?}: {err}"
        );
    }
    // A fifth argument after tokens can only be WITHDETAILS.
    assert_eq!(
        c.absorb_err(&[b"k", b"1", b"1", b"1", b"1"]),
        "ERR syntax error: the only option after tokens is WITHDETAILS"
    );
    let exists: i64 = redis::cmd("EXISTS").arg("k").query(&mut c).unwrap();
    assert_eq!(exists, 0);
}

#[test]
fn malformed_numbers_are_rejected_naming_the_argument_and_write_nothing() {
    let (_s, mut c) = server();
    for &b in MALFORMED_NUMBERS {
        for (pos, name) in [(2, "capacity"), (3, "period"), (4, "tokens")] {
            let mut args: Vec<&[u8]> = vec![b"victim", b"10", b"60", b"1"];
            args[pos - 1] = b;
            let err = c.absorb_err(&args);
            assert_eq!(
                err,
                format!("ERR {name} is not a positive integer"),
                "{b:?}"
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
                c.absorb_err(&args),
                format!("ERR {name} is out of range (1 to {max})")
            );
        }
    }
    let exists: i64 = redis::cmd("EXISTS").arg("victim").query(&mut c).unwrap();
    assert_eq!(exists, 0, "a rejected call wrote the key");
    // The largest accepted values work.
    assert_eq!(
        c.absorb("max", 1_000_000_000_000_000, 10_000_000_000, Some(1)),
        999_999_999_999_999
    );
}

#[test]
fn keys_of_other_types_get_wrongtype_and_are_untouched() {
    let (_s, mut c) = server();
    for key in keys_of_other_types(&mut c) {
        let err = c.absorb_err(&[key.as_bytes(), b"10", b"60"]);
        assert!(err.starts_with("WRONGTYPE"), "{key}: {err}");
    }
    let len: i64 = redis::cmd("LLEN").arg("list").query(&mut c).unwrap();
    assert_eq!(len, 1);
}

#[test]
fn strings_that_are_not_buckets_are_an_error_and_untouched() {
    let (_s, mut c) = server();
    for (i, v) in [&b"hello"[..], b"", b"~", b"~x", b"1.5", b"\xff\x00"]
        .iter()
        .enumerate()
    {
        let key = format!("str{i}");
        let _: () = redis::cmd("SET").arg(&key).arg(*v).query(&mut c).unwrap();
        let err = c.absorb_err(&[key.as_bytes(), b"10", b"60"]);
        assert_eq!(
            err,
            "ERR the key holds a string that is not a redis-shield bucket"
        );
        let still: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
        assert_eq!(still, *v);
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut c).unwrap();
        assert_eq!(ttl, -1);
    }
    // A 2.x value whose expiry was removed cannot be trusted: fail closed.
    assert_eq!(c.absorb("persisted", 10, 60, Some(5)), 5);
    let _: () = redis::cmd("PERSIST")
        .arg("persisted")
        .query(&mut c)
        .unwrap();
    let err = c.absorb_err(&[b"persisted", b"10", b"60"]);
    assert!(
        err.starts_with("ERR the bucket key's expiry was changed"),
        "{err}"
    );
}

#[test]
fn odd_but_valid_keys_work() {
    let (_s, mut c) = server();
    let long = vec![b'k'; 10 * 1024];
    let binary: Vec<u8> = (0..=255u8).collect();
    for key in [&b""[..], &binary, &long, b"\r\n", b"{tag}x"] {
        assert_eq!(c.absorb(key, 2, 60, None), 1);
        assert_eq!(c.absorb(key, 2, 60, None), 0);
        assert_eq!(c.absorb(key, 2, 60, None), -1);
    }
}

#[test]
fn command_info_getkeys_and_flags() {
    let (_s, mut c) = server();
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("SHIELD.absorb")
        .arg("the-key")
        .arg(1)
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, vec!["the-key".to_string()]);
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

#[test]
fn info_section_counts_calls() {
    let (_s, mut c) = server();
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

#[test]
fn works_inside_multi_and_lua() {
    let (_s, mut c) = server();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("SHIELD.absorb")
        .arg("m")
        .arg(3)
        .arg(60)
        .cmd("SHIELD.absorb")
        .arg("m")
        .arg(3)
        .arg(60)
        .query(&mut c)
        .unwrap();
    assert_eq!((a, b), (2, 1));
    let n: i64 = redis::cmd("EVAL")
        .arg("return redis.call('SHIELD.absorb', KEYS[1], 3, 60)")
        .arg(1)
        .arg("m")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
}
