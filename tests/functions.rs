//! The Functions library `functions/shield.lua` against the module: the
//! same cases through both engines, calls alternating between them on the
//! same keys, the library on servers (and a replica) without the module,
//! and its exactness.
//!
//! Most calls are checked by an oracle that cannot be made flaky by the
//! clock: the stored state of every key involved is read before the call,
//! the server's clock before and after it, and the reply and the states
//! after it must be exactly what the engine (`shield-engine`, the reference
//! for every byte) predicts at one millisecond of that interval.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use redis::{Connection, Value};
use shield_engine::{absorb_all, decode, Bucket, Charge, Decision, Encoded, Limit};
use shield_testkit::functions::{cmd_text, error_of, load_library, Engine};
use shield_testkit::{
    keys_of_other_types, Pair, Rng, Server, ServerOptions, ShieldCommands, MALFORMED_NUMBERS,
};

/// A key's value (`None`: no key) and `PEXPIRETIME`.
type Stored = (Option<Vec<u8>>, i64);

fn server_ms(c: &mut Connection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(c).unwrap();
    secs * 1000 + micros / 1000
}

/// A server with the module and the library: both engines on one keyspace.
fn server_with_both() -> Server {
    let s = Server::start(ServerOptions::default());
    load_library(&mut s.conn());
    s
}

fn set_px(c: &mut Connection, key: &str, value: &[u8], expire_at_ms: Option<u64>) {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if let Some(at) = expire_at_ms {
        cmd.arg("PXAT").arg(at);
    }
    let _: () = cmd.query(c).unwrap();
}

fn stored(c: &mut Connection, key: &str) -> Stored {
    match c.stored(key) {
        // Expired between the GET and the PEXPIRETIME.
        (Some(_), -2) => (None, -2),
        s => s,
    }
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap())
}

fn encoded(e: &Encoded) -> Stored {
    (
        Some(e.value().unwrap().to_vec()),
        i64::try_from(e.expire_at_ms()).unwrap(),
    )
}

/// One SHIELD operation, with typed arguments.
#[derive(Clone, Debug)]
enum Op {
    Absorb {
        key: String,
        capacity: u64,
        period: u64,
        tokens: Option<u64>,
        details: bool,
    },
    Inspect {
        key: String,
        capacity: u64,
        period: u64,
    },
    AbsorbAll(Vec<(String, u64, u64, u64)>),
}

fn absorb(key: &str, capacity: u64, period: u64, tokens: Option<u64>, details: bool) -> Op {
    Op::Absorb {
        key: key.into(),
        capacity,
        period,
        tokens,
        details,
    }
}

fn inspect(key: &str, capacity: u64, period: u64) -> Op {
    Op::Inspect {
        key: key.into(),
        capacity,
        period,
    }
}

fn absorb_all_op(buckets: &[(&str, u64, u64, u64)]) -> Op {
    Op::AbsorbAll(
        buckets
            .iter()
            .map(|&(k, c, p, t)| (k.to_string(), c, p, t))
            .collect(),
    )
}

/// The bucket of a key as the engine reads it (`must_store`: a 1.x value).
fn read(limit: Limit, before: &Stored, now_ms: u64) -> (Bucket, bool) {
    match before {
        (None, _) => (Bucket::full(limit, now_ms), false),
        (Some(v), expire) => {
            let expire = (*expire >= 0).then_some(*expire);
            let d = decode(limit, v, expire, now_ms).unwrap();
            (d.bucket, d.must_store)
        }
    }
}

impl Op {
    fn keys(&self) -> Vec<&str> {
        match self {
            Op::Absorb { key, .. } | Op::Inspect { key, .. } => vec![key.as_str()],
            Op::AbsorbAll(b) => b.iter().map(|(k, ..)| k.as_str()).collect(),
        }
    }

    fn cmd(&self, engine: Engine) -> redis::Cmd {
        match self {
            Op::Absorb {
                key,
                capacity,
                period,
                tokens,
                details,
            } => engine.absorb_typed_cmd(key, *capacity, *period, *tokens, *details),
            Op::Inspect {
                key,
                capacity,
                period,
            } => {
                let (c, p) = (capacity.to_string(), period.to_string());
                engine.inspect_cmd(key.as_bytes(), &[c.as_bytes(), p.as_bytes()])
            }
            Op::AbsorbAll(b) => {
                let text: Vec<[String; 3]> = b
                    .iter()
                    .map(|(_, c, p, t)| [c.to_string(), p.to_string(), t.to_string()])
                    .collect();
                let groups: Vec<(&[u8], [&[u8]; 3])> = b
                    .iter()
                    .zip(&text)
                    .map(|((k, ..), [c, p, t])| {
                        (k.as_bytes(), [c.as_bytes(), p.as_bytes(), t.as_bytes()])
                    })
                    .collect();
                engine.absorb_all_cmd(&groups)
            }
        }
    }

    /// The engine's reply and stored states after the call, at `now_ms`,
    /// from the states before it.
    fn predict(&self, before: &[Stored], now_ms: u64) -> (Value, Vec<Stored>) {
        match self {
            Op::Absorb {
                capacity,
                period,
                tokens,
                details,
                ..
            } => {
                let limit = Limit::new(*capacity, *period).unwrap();
                let tokens = tokens.unwrap_or(1);
                let (bucket, must_store) = read(limit, &before[0], now_ms);
                let d = bucket.absorb_with_details(tokens);
                let after = match d.decision {
                    Decision::Admitted { after, .. } => encoded(&after.encode().unwrap()),
                    Decision::Denied { .. } if must_store => encoded(&bucket.encode().unwrap()),
                    Decision::Denied { .. } => before[0].clone(),
                };
                let admitted = matches!(d.decision, Decision::Admitted { .. });
                let reply = if *details {
                    Value::Array(vec![
                        Value::Int(i64::from(admitted)),
                        int(d.tokens_left),
                        d.retry_after_ms.map_or(Value::Int(-1), int),
                        int(d.reset_after_ms),
                    ])
                } else if admitted {
                    int(d.tokens_left)
                } else {
                    Value::Int(-1)
                };
                (reply, vec![after])
            }
            Op::Inspect {
                capacity, period, ..
            } => {
                let limit = Limit::new(*capacity, *period).unwrap();
                let v = read(limit, &before[0], now_ms).0.inspect();
                let reply = [v.tokens_left, v.capacity, v.next_token_ms, v.full_ms];
                (
                    Value::Array(reply.into_iter().map(int).collect()),
                    before.to_vec(),
                )
            }
            Op::AbsorbAll(buckets) => {
                let read: Vec<(Bucket, bool)> = buckets
                    .iter()
                    .zip(before)
                    .map(|((_, c, p, _), s)| read(Limit::new(*c, *p).unwrap(), s, now_ms))
                    .collect();
                let charges: Vec<Charge> = read
                    .iter()
                    .zip(buckets)
                    .map(|((bucket, _), b)| Charge {
                        bucket: *bucket,
                        tokens: b.3,
                    })
                    .collect();
                let out = absorb_all(&charges);
                let mut after = Vec::new();
                let mut short = Vec::new();
                for (i, decision) in out.each.iter().enumerate() {
                    let (bucket, must_store) = read[i];
                    after.push(match *decision {
                        Decision::Admitted { after, .. } if out.admitted => {
                            encoded(&after.encode().unwrap())
                        }
                        _ if must_store => encoded(&bucket.encode().unwrap()),
                        _ => before[i].clone(),
                    });
                    if matches!(decision, Decision::Denied { .. }) {
                        short.push(Value::BulkString(buckets[i].0.clone().into_bytes()));
                    }
                }
                let reply = Value::Array(vec![
                    Value::Int(i64::from(out.admitted)),
                    out.retry_after_ms.map_or(Value::Int(-1), int),
                    Value::Array(out.tokens_left.iter().map(|&n| int(n)).collect()),
                    Value::Array(short),
                ]);
                (reply, after)
            }
        }
    }
}

/// A predicted state matches the one read, or the predicted key has
/// expired by `read_until` (the clock after reading the states).
fn state_matches(predicted: &Stored, actual: &Stored, read_until: u64) -> bool {
    predicted == actual
        || (actual.0.is_none()
            && predicted.1 >= 0
            && u64::try_from(predicted.1).unwrap() <= read_until)
}

/// Runs `op` through `engine` and checks its reply and the stored states
/// after it against the engine's prediction at some millisecond between the
/// server's clock before and after the call. Returns the reply.
fn run_checked(c: &mut Connection, engine: Engine, op: &Op) -> Value {
    let keys = op.keys();
    let before: Vec<Stored> = keys.iter().map(|k| stored(c, k)).collect();
    let t0 = server_ms(c);
    let reply: Value = op
        .cmd(engine)
        .query(c)
        .unwrap_or_else(|e| panic!("{engine} {op:?}: {e}"));
    let t1 = server_ms(c);
    let after: Vec<Stored> = keys.iter().map(|k| stored(c, k)).collect();
    let t2 = server_ms(c);
    let predictions: Vec<(u64, Value, Vec<Stored>)> = (t0..=t1)
        .map(|now| {
            let (r, s) = op.predict(&before, now);
            (now, r, s)
        })
        .collect();
    let ok = predictions.iter().any(|(_, r, s)| {
        *r == reply
            && s.len() == after.len()
            && s.iter().zip(&after).all(|(p, a)| state_matches(p, a, t2))
    });
    assert!(
        ok,
        "{engine} {op:?}\n  before {before:?}\n  reply {reply:?}\n  after {after:?}\n  \
         predicted (ms, reply, after): {predictions:?}"
    );
    reply
}

fn ints(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => *n,
                other => panic!("not an integer: {other:?}"),
            })
            .collect(),
        Value::Int(n) => vec![*n],
        other => panic!("not integers: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// 1. The same cases through both engines.

#[test]
fn documented_example_stored_bytes_and_expiry_on_both_engines() {
    for engine in Engine::BOTH {
        let s = engine.start_server();
        let mut c = s.conn();
        let before = server_ms(&mut c);
        assert_eq!(engine.absorb(&mut c, "user123", 30, 60, Some(13)), 17);
        let after = server_ms(&mut c);
        assert_eq!(engine.absorb(&mut c, "user123", 30, 60, Some(13)), 4);
        assert_eq!(engine.absorb(&mut c, "user123", 30, 60, Some(13)), -1);
        // 26 tokens at 0.5 token/s: full again 52 s after the first call.
        let (value, expire) = c.stored("user123");
        assert_eq!(value.as_deref(), Some(&b"~0"[..]), "{engine}");
        let expire = u64::try_from(expire).unwrap();
        assert!(
            (before + 52_000..=after + 52_000).contains(&expire),
            "{engine}: {before} {expire} {after}"
        );
        // 3 tokens per 7 s: full again 2 ticks of 1/3 ms before the expiry.
        assert_eq!(engine.absorb(&mut c, "frac", 3, 7, Some(1)), 2);
        assert_eq!(c.stored("frac").0.as_deref(), Some(&b"~2/3"[..]));
        // Default tokens is 1; more than the capacity is denied and writes nothing.
        assert_eq!(engine.absorb(&mut c, "k", 3, 60, None), 2);
        assert_eq!(engine.absorb(&mut c, "big", 3, 60, Some(4)), -1);
        assert_eq!(
            engine.absorb(&mut c, "big", 3, 60, Some(i64::MAX as u64)),
            -1
        );
        assert_eq!(c.stored("big"), (None, -2), "{engine}");
        // Odd but valid key names.
        let binary: Vec<u8> = (0..=255u8).collect();
        for key in [&b""[..], &binary, b"\r\n", b"{tag}x"] {
            for want in [1, 0, -1] {
                let got: i64 = engine
                    .absorb_cmd(key, &[b"2", b"60"])
                    .query(&mut c)
                    .unwrap();
                assert_eq!(got, want, "{engine} {key:?}");
            }
        }
    }
}

#[test]
fn withdetails_inspect_and_absorball_match_the_engine_on_both_engines() {
    for engine in Engine::BOTH {
        let s = engine.start_server();
        let mut c = s.conn();
        let c = &mut c;
        // README: 1 token per second.
        let r = ints(&run_checked(
            c,
            engine,
            &absorb("api:42", 10, 10, Some(4), true),
        ));
        assert_eq!(r[..3], [1, 6, 0], "{engine}");
        assert!((3_990..=4_000).contains(&r[3]), "{engine} {r:?}");
        let r = ints(&run_checked(
            c,
            engine,
            &absorb("api:42", 10, 10, Some(8), true),
        ));
        assert_eq!(r[..2], [0, 6], "{engine}");
        let r = ints(&run_checked(
            c,
            engine,
            &absorb("api:42", 10, 10, Some(11), true),
        ));
        assert_eq!((r[0], r[2]), (0, -1), "{engine}: never");
        let r = ints(&run_checked(c, engine, &inspect("api:42", 10, 10)));
        assert_eq!(r[..2], [6, 10], "{engine}");
        // WITHDETAILS without tokens takes one; the keyword in any case.
        let v: Vec<i64> = engine
            .absorb_cmd(b"d2", &[b"5", b"60", b"withDetails"])
            .query(c)
            .unwrap();
        assert_eq!(v[..3], [1, 4, 0], "{engine}");
        // Inspect of a missing key: a full bucket, not created.
        assert_eq!(engine.inspect(c, "none", 10, 10), [10, 10, 0, 0]);
        assert_eq!(c.stored("none"), (None, -2));
        // Absorball: all or nothing.
        let day = 1_000_000;
        let limits = [("{u1}:api", 10, day, 3), ("{u1}:ip", 4, day, 3)];
        let r = run_checked(c, engine, &absorb_all_op(&limits));
        assert!(matches!(&r, Value::Array(a) if a[0] == Value::Int(1)));
        let denied = run_checked(c, engine, &absorb_all_op(&limits));
        let Value::Array(parts) = &denied else {
            panic!("{denied:?}")
        };
        assert_eq!(parts[0], Value::Int(0), "{engine}");
        assert_eq!(
            parts[3],
            Value::Array(vec![Value::BulkString(b"{u1}:ip".to_vec())])
        );
        assert_eq!(
            engine.absorb(c, "{u1}:api", 10, day, Some(7)),
            0,
            "{engine}"
        );
        let never = run_checked(
            c,
            engine,
            &absorb_all_op(&[("a", 5, 60, 1), ("b", 5, 60, 6)]),
        );
        let Value::Array(parts) = &never else {
            panic!("{never:?}")
        };
        assert_eq!((&parts[0], &parts[1]), (&Value::Int(0), &Value::Int(-1)));
        assert_eq!(c.stored("a"), (None, -2), "{engine}: denied wrote");
        // Several limits with remainders, drained together.
        for _ in 0..4 {
            run_checked(
                c,
                engine,
                &absorb_all_op(&[("x", 5, 1, 2), ("y", 3, 7, 1), ("z", 7, 3, 3)]),
            );
        }
        // 32 buckets is the most.
        let names: Vec<String> = (0..32).map(|i| format!("{{m}}{i}")).collect();
        let many: Vec<(&str, u64, u64, u64)> =
            names.iter().map(|n| (n.as_str(), 2, 60, 1)).collect();
        let r = run_checked(c, engine, &absorb_all_op(&many));
        assert!(
            matches!(&r, Value::Array(a) if a[0] == Value::Int(1)),
            "{r:?}"
        );
    }
}

#[test]
fn one_x_values_and_remainders_of_other_limits_on_both_engines() {
    for engine in Engine::BOTH {
        let s = engine.start_server();
        let mut c = s.conn();
        let c = &mut c;
        let now = server_ms(c);
        // 1.x integer values: tokens left now, stored by the first absorb
        // even when it is denied.
        let legacy: [(&str, &[u8]); 7] = [
            ("oldmax", b"1000000000000000"),
            ("old5", b"5"),
            ("old0", b"0"),
            ("old7z", b"007"),
            ("oldneg", b"-4"),
            ("oldnegz", b"-0"),
            ("oldbig", b"500"),
        ];
        for (key, v) in legacy {
            set_px(c, key, v, Some(now + 60_000));
            run_checked(c, engine, &inspect(key, 10, 10));
            run_checked(c, engine, &absorb(key, 10, 10, Some(6), true));
            run_checked(c, engine, &absorb(key, 10, 10, Some(2), false));
        }
        assert_eq!(c.stored("oldbig").0.as_deref(), Some(&b"~0"[..]));
        // A count beyond any capacity is no 1.x bucket: a CL.THROTTLE TAT
        // (nanoseconds) on the same key must not read as a full bucket.
        for (key, v) in [
            ("oldhuge", &b"18446744073709551615"[..]),
            ("tat", b"1795689325000123456"),
        ] {
            set_px(c, key, v, Some(now + 60_000));
            let err = shield_testkit::functions::error_of(
                c,
                &engine.absorb_cmd(key.as_bytes(), &[b"10", b"10"]),
            );
            assert!(
                err.contains("not a redis-shield bucket"),
                "{engine} {key}: {err}"
            );
            assert_eq!(c.stored(key).0.as_deref(), Some(v), "untouched");
        }
        // Denied on a 1.x value: stored in the 2.x form.
        set_px(c, "olddeny", b"3", Some(now + 60_000));
        assert_eq!(
            engine.absorb_details(c, "olddeny", 10, 10, 5)[..3],
            [0, 3, 2000]
        );
        assert_eq!(c.stored("olddeny").0.as_deref(), Some(&b"~0"[..]));
        // A 1.x value at or above the capacity: left as it is when denied.
        set_px(c, "oldfull", b"500", Some(now + 60_000));
        assert_eq!(engine.absorb(c, "oldfull", 10, 60, Some(11)), -1);
        assert_eq!(c.stored("oldfull").0.as_deref(), Some(&b"500"[..]));
        // 1.x values in an absorball, denied by another bucket.
        set_px(c, "{l}a", b"4", Some(now + 60_000));
        run_checked(
            c,
            engine,
            &absorb_all_op(&[("{l}a", 10, 10, 1), ("{l}b", 2, 10, 3)]),
        );
        // Remainders written with other denominators (another capacity, a
        // GCRA rate), without one (pre-release 2.0), and the largest ones.
        let values: [&[u8]; 9] = [
            b"~2/3",
            b"~1/7",
            b"~999000000/1000000000000000",
            b"~123456789012345678/999999999999999999",
            b"~18446744073709551614/18446744073709551615",
            b"~5",
            b"~0",
            b"~00",
            b"~0/1",
        ];
        for (i, v) in values.iter().enumerate() {
            for (cap, period) in [(3, 7), (10, 1), (1_000_000_007, 13), (7, 1_000_000)] {
                let key = format!("rem{i}:{cap}");
                set_px(c, &key, v, Some(now + 3_000 + i as u64));
                run_checked(c, engine, &inspect(&key, cap, period));
                run_checked(c, engine, &absorb(&key, cap, period, Some(1), true));
                run_checked(c, engine, &absorb(&key, cap, period, Some(1), false));
            }
        }
        // A full-again moment far beyond the burst (the clock went back, or
        // a longer limit wrote it): no token, waits exact.
        for (i, v) in [&b"~0"[..], b"~2/3", b"~999/1000"].iter().enumerate() {
            let key = format!("far{i}");
            set_px(c, &key, v, Some(now + 10_000_000_000 + i as u64));
            run_checked(c, engine, &inspect(&key, 3, 7));
            run_checked(c, engine, &absorb(&key, 3, 7, Some(2), true));
            run_checked(c, engine, &absorb(&key, 1000, 3600, Some(2), true));
        }
    }
}

/// Every bad-argument case of `tests/absorb_replies.rs` and the other error
/// texts: the same text from both engines, nothing written.
#[test]
fn every_error_text_is_the_modules_and_writes_nothing() {
    let s = server_with_both();
    let mut c = s.conn();
    let both = |c: &mut Connection, what: &str, cmds: [redis::Cmd; 2]| -> String {
        let [m, l] = cmds;
        let (em, el) = (error_of(c, &m), error_of(c, &l));
        assert_eq!(em, el, "{what}: module vs library ({})", cmd_text(&l));
        em
    };
    for &b in MALFORMED_NUMBERS {
        for (pos, name) in [(0, "capacity"), (1, "period"), (2, "tokens")] {
            let mut args: Vec<&[u8]> = vec![b"10", b"60", b"1"];
            args[pos] = b;
            let cmds = Engine::BOTH.map(|e| e.absorb_cmd(b"victim", &args));
            let err = both(&mut c, &format!("{b:?} as {name}"), cmds);
            assert_eq!(err, format!("ERR {name} is not a positive integer"));
            if pos < 2 {
                let cmds = Engine::BOTH.map(|e| e.inspect_cmd(b"victim", &args[..2]));
                both(&mut c, "inspect", cmds);
            }
            let cmds = Engine::BOTH.map(|e| {
                e.absorb_all_cmd(&[
                    (b"{v}ok", [b"10", b"60", b"1"]),
                    (b"{v}victim", [args[0], args[1], args[2]]),
                ])
            });
            assert_eq!(both(&mut c, "absorball", cmds), err);
        }
    }
    for (pos, name, max) in [
        (0, "capacity", "1000000000000000"),
        (1, "period", "10000000000"),
        (2, "tokens", "9223372036854775807"),
    ] {
        for big in [
            &b"99999999999999999999999999"[..],
            b"18446744073709551616",
            b"9223372036854775808",
        ] {
            let mut args: Vec<&[u8]> = vec![b"10", b"60", b"1"];
            args[pos] = big;
            let cmds = Engine::BOTH.map(|e| e.absorb_cmd(b"victim", &args));
            assert_eq!(
                both(&mut c, name, cmds),
                format!("ERR {name} is out of range (1 to {max})")
            );
        }
    }
    // The first bad argument is the one named, in the module's order.
    let cmds = Engine::BOTH.map(|e| e.absorb_cmd(b"victim", &[b"x", b"0", b"-1"]));
    assert_eq!(
        both(&mut c, "order", cmds),
        "ERR capacity is not a positive integer"
    );
    // Wrong arity: the same words as the module's (the server's) error.
    for args in [
        &[][..],
        &[&b"1"[..]],
        &[b"1", b"1", b"1", b"WITHDETAILS", b"x"],
    ] {
        let cmds = Engine::BOTH.map(|e| e.absorb_cmd(b"victim", args));
        assert_eq!(
            both(&mut c, "arity", cmds),
            "ERR wrong number of arguments for 'SHIELD.absorb' command"
        );
    }
    for args in [&[&b"1"[..]][..], &[b"1", b"1", b"1"]] {
        let cmds = Engine::BOTH.map(|e| e.inspect_cmd(b"victim", args));
        assert_eq!(
            both(&mut c, "inspect arity", cmds),
            "ERR wrong number of arguments for 'SHIELD.inspect' command"
        );
    }
    let m = redis::cmd("SHIELD.absorball").arg(&["a", "1", "1"]).clone();
    let l = redis::cmd("FCALL")
        .arg(&["shield_absorball", "1", "a", "1", "1"])
        .clone();
    assert_eq!(
        both(&mut c, "absorball arity", [m, l]),
        "ERR wrong number of arguments for 'SHIELD.absorball' command"
    );
    let l0 = redis::cmd("FCALL").arg(&["shield_absorball", "0"]).clone();
    assert_eq!(
        error_of(&mut c, &l0),
        "ERR wrong number of arguments for 'SHIELD.absorball' command"
    );
    // The library's absorb and inspect take exactly one key.
    let l2 = redis::cmd("FCALL")
        .arg(&["shield_absorb", "2", "a", "b", "1", "1"])
        .clone();
    assert!(error_of(&mut c, &l2).contains("wrong number of arguments"));
    // A fifth argument after tokens can only be WITHDETAILS.
    let cmds = Engine::BOTH.map(|e| e.absorb_cmd(b"victim", &[b"1", b"1", b"1", b"1"]));
    assert_eq!(
        both(&mut c, "syntax", cmds),
        "ERR syntax error: the only option after tokens is WITHDETAILS"
    );
    let cmds = Engine::BOTH
        .map(|e| e.absorb_cmd(b"victim", &[b"1", b"1", b"WITHDETAILS", b"WITHDETAILS"]));
    assert_eq!(
        both(&mut c, "keyword as tokens", cmds),
        "ERR tokens is not a positive integer"
    );
    // Absorball: at most 32 buckets, each key once.
    let names: Vec<String> = (0..33).map(|i| format!("{{m}}{i}")).collect();
    let groups: Vec<(&[u8], [&[u8]; 3])> = names
        .iter()
        .map(|n| (n.as_bytes(), [&b"1"[..], b"1", b"1"]))
        .collect();
    let cmds = Engine::BOTH.map(|e| e.absorb_all_cmd(&groups));
    assert_eq!(
        both(&mut c, "33 buckets", cmds),
        "ERR too many buckets: at most 32 per call"
    );
    let cmds = Engine::BOTH.map(|e| {
        e.absorb_all_cmd(&[
            (b"dup", [b"1", b"1", b"1"]),
            (b"other", [b"1", b"1", b"1"]),
            (b"dup", [b"1", b"1", b"1"]),
        ])
    });
    assert_eq!(
        both(&mut c, "duplicate", cmds),
        "ERR the same key appears more than once in one call"
    );
    // Every argument is validated before a key is read: the duplicate of
    // a list is reported, not WRONGTYPE.
    let _: () = redis::cmd("RPUSH")
        .arg("{v}list")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let cmds = Engine::BOTH.map(|e| {
        e.absorb_all_cmd(&[
            (b"{v}list", [b"1", b"1", b"1"]),
            (b"{v}list", [b"1", b"1", b"1"]),
        ])
    });
    assert_eq!(
        both(&mut c, "validated first", cmds),
        "ERR the same key appears more than once in one call"
    );
    let _: () = redis::cmd("DEL").arg("{v}list").query(&mut c).unwrap();
    let keys: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(keys, 0, "a rejected call wrote a key");
}

#[test]
fn keys_of_other_kinds_are_the_modules_errors_and_untouched() {
    let s = server_with_both();
    let mut c = s.conn();
    let others = keys_of_other_types(&mut c);
    let expect = |c: &mut Connection, key: &[u8], want: &str| {
        for engine in Engine::BOTH {
            let cmds = [
                engine.absorb_cmd(key, &[b"10", b"60"]),
                engine.inspect_cmd(key, &[b"10", b"60"]),
                engine.absorb_all_cmd(&[(b"ok", [b"1", b"1", b"1"]), (key, [b"10", b"60", b"1"])]),
            ];
            for cmd in cmds {
                let err = error_of(c, &cmd);
                assert_eq!(err, want, "{engine}: {}", cmd_text(&cmd));
            }
        }
    };
    for key in others {
        expect(
            &mut c,
            key.as_bytes(),
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        );
    }
    let len: i64 = redis::cmd("LLEN").arg("list").query(&mut c).unwrap();
    assert_eq!(len, 1);
    let not_buckets: [&[u8]; 17] = [
        b"hello",
        b"",
        b"~",
        b"~x",
        b"~-1",
        b"~1.5",
        b"1.5",
        b"--1",
        b"-",
        b"\xff\x00",
        b" 1",
        b"~1/",
        b"~/5",
        b"~1/0",
        b"~5/5",
        b"~1/2/3",
        b"18446744073709551616",
    ];
    for (i, v) in not_buckets.iter().enumerate() {
        let key = format!("str{i}");
        set_px(&mut c, &key, v, None);
        expect(
            &mut c,
            key.as_bytes(),
            "ERR the key holds a string that is not a redis-shield bucket",
        );
        assert_eq!(c.stored(&key), (Some(v.to_vec()), -1));
    }
    // ~7/5 and ~18446744073709551616/... are not buckets either, with an expiry.
    for v in [&b"~7/5"[..], b"~1/18446744073709551616"] {
        let at = server_ms(&mut c) + 60_000;
        set_px(&mut c, "bad2", v, Some(at));
        expect(
            &mut c,
            b"bad2",
            "ERR the key holds a string that is not a redis-shield bucket",
        );
    }
    // A 2.x value whose expiry was removed: fail closed.
    for v in [&b"~0"[..], b"~2/3", b"~5"] {
        set_px(&mut c, "persisted", v, None);
        expect(
            &mut c,
            b"persisted",
            "ERR the bucket key's expiry was changed outside redis-shield; refusing to guess its state",
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Interop: calls alternating between the module and the library.

#[test]
fn random_calls_alternating_engines_on_the_same_keys_match_the_engine() {
    let s = server_with_both();
    let mut c = s.conn();
    let c = &mut c;
    let mut rng = Rng::new();
    let limits: [(u64, u64); 10] = [
        (10, 1),
        (3, 7),
        (30, 60),
        (1_000, 3_600),
        (7, 13),
        (1, 1),
        (999_983, 7_919),
        (5, 1),
        (2, 3),
        (1_000_000_007, 1),
    ];
    let keys: Vec<String> = (0..8).map(|i| format!("{{i}}k{i}")).collect();
    let now = server_ms(c);
    // Start some keys from 1.x values and foreign remainders.
    set_px(c, &keys[0], b"3", Some(now + 60_000));
    set_px(c, &keys[1], b"~1/7", Some(now + 2_000));
    set_px(c, &keys[2], b"~999000000/1000000000000000", Some(now + 500));
    let pick_limit = |rng: &mut Rng, key: usize| {
        // Most keys keep their limit; the last two change it every call.
        if key >= 6 {
            limits[rng.below(limits.len() as u64) as usize]
        } else {
            limits[key % limits.len()]
        }
    };
    let tokens = |rng: &mut Rng, cap: u64| match rng.below(4) {
        0 => 1,
        1 => 1 + rng.below(cap.min(5)),
        2 => 1 + rng.below(cap + 1),
        _ => 1 + rng.below(3),
    };
    let mut used = [0usize; 2];
    for _ in 0..600 {
        let engine = Engine::BOTH[rng.below(2) as usize];
        used[usize::from(engine == Engine::Library)] += 1;
        let k = rng.below(keys.len() as u64) as usize;
        let (cap, period) = pick_limit(&mut rng, k);
        let op = match rng.below(10) {
            0..=4 => absorb(
                &keys[k],
                cap,
                period,
                (rng.below(3) > 0).then(|| tokens(&mut rng, cap)),
                rng.below(2) == 0,
            ),
            5 | 6 => inspect(&keys[k], cap, period),
            _ => {
                let n = 2 + rng.below(3) as usize;
                let first = rng.below(keys.len() as u64) as usize;
                let group: Vec<(String, u64, u64, u64)> = (0..n)
                    .map(|j| {
                        let kk = (first + j) % keys.len();
                        let (cap, period) = pick_limit(&mut rng, kk);
                        (keys[kk].clone(), cap, period, tokens(&mut rng, cap))
                    })
                    .collect();
                Op::AbsorbAll(group)
            }
        };
        run_checked(c, engine, &op);
        if rng.below(50) == 0 {
            // Now and then a key starts again from a 1.x value.
            let v = rng.below(12).to_string();
            let at = server_ms(c) + 30_000;
            set_px(c, &keys[k], v.as_bytes(), Some(at));
        }
    }
    assert!(used[0] > 200 && used[1] > 200, "{used:?}");
}

/// Pairs of keys with the same starting state, one driven by a random
/// engine, the other by the module only: slow enough that no token and no
/// full-again moment depends on the millisecond of the call, so replies
/// (but the waits) and stored bytes and expiries must be identical.
#[test]
fn a_key_driven_by_both_engines_stays_byte_identical_to_one_driven_by_the_module() {
    let s = server_with_both();
    let mut c = s.conn();
    let mut rng = Rng::new();
    // A token every 10^9 ms (11.6 days) or more; never full during the test.
    let limits: [(u64, u64); 4] = [
        (1_000, 1_000_000_000),
        (3, 7_000_000),
        (999_983, 7_919_000),
        (8, 1_000_000_000),
    ];
    let now = server_ms(&mut c);
    for (i, (_, period)) in limits.iter().enumerate() {
        // Half full, with a remainder: the moment does not depend on now.
        let half = period * 1000 / 2;
        for side in ["x", "m"] {
            let key = format!("{{p{i}}}{side}");
            set_px(&mut c, &key, b"~1/3", Some(now + half));
        }
    }
    for _ in 0..300 {
        let i = rng.below(limits.len() as u64) as usize;
        let (cap, period) = limits[i];
        let (x, m) = (format!("{{p{i}}}x"), format!("{{p{i}}}m"));
        let engine = Engine::BOTH[rng.below(2) as usize];
        let t = 1 + rng.below(cap.min(4));
        let (rx, rm): (Vec<i64>, Vec<i64>) = match rng.below(3) {
            0 => (
                vec![engine.absorb(&mut c, &x, cap, period, Some(t))],
                vec![Engine::Module.absorb(&mut c, &m, cap, period, Some(t))],
            ),
            1 => (
                engine.absorb_details(&mut c, &x, cap, period, t)[..2].to_vec(),
                Engine::Module.absorb_details(&mut c, &m, cap, period, t)[..2].to_vec(),
            ),
            _ => (
                engine.inspect(&mut c, &x, cap, period)[..2].to_vec(),
                Engine::Module.inspect(&mut c, &m, cap, period)[..2].to_vec(),
            ),
        };
        assert_eq!(rx, rm, "{engine} on {x}");
        assert_eq!(c.stored(&x), c.stored(&m), "{engine} on {x}");
    }
}

// ---------------------------------------------------------------------------
// 3. The library without the module: on a master and on its replica.

#[test]
fn library_without_the_module_on_a_master_and_its_replica() {
    let Pair { master, replica } = Pair::start(
        ServerOptions::default().without_module(),
        ServerOptions::default().without_module(),
    );
    let mut m = master.conn();
    // FUNCTION LOAD is replicated: the replica has the library too.
    load_library(&mut m);
    let lib = Engine::Library;
    let now = server_ms(&mut m);
    set_px(&mut m, "legacy", b"7", Some(now + 60_000));
    set_px(&mut m, "foreign", b"~5/11", Some(now + 9_000));
    assert_eq!(lib.absorb(&mut m, "a", 30, 60, Some(13)), 17);
    assert_eq!(lib.absorb(&mut m, "a", 30, 60, Some(13)), 4);
    assert_eq!(lib.absorb(&mut m, "a", 30, 60, Some(13)), -1);
    assert_eq!(lib.absorb(&mut m, "frac", 3, 7, Some(2)), 1);
    assert_eq!(lib.absorb(&mut m, "legacy", 10, 60, Some(9)), -1);
    run_checked(&mut m, lib, &absorb("foreign", 13, 17, Some(1), true));
    let all = lib.absorb_all(&mut m, &[("{t}a", 100, 100_000, 30), ("{t}b", 5, 1, 1)]);
    assert_eq!(all, (1, 0, vec![70, 4], vec![]));
    let keys = ["a", "frac", "legacy", "foreign", "{t}a", "{t}b"];
    assert_eq!(m.wait_replicas(1), 1);
    let mut r = replica.conn();
    for key in keys {
        let on_master = m.stored(key);
        assert!(
            on_master.0.is_some() && on_master.1 > 0,
            "{key}: {on_master:?}"
        );
        assert_eq!(r.stored(key), on_master, "{key} on the replica");
    }
    assert_eq!(m.stored("legacy").0.as_deref(), Some(&b"~0"[..]));
    // FCALL_RO works on the replica, and agrees with the master.
    assert_eq!(lib.inspect(&mut r, "{t}a", 100, 100_000)[..2], [70, 100]);
    assert_eq!(lib.inspect(&mut m, "{t}a", 100, 100_000)[..2], [70, 100]);
    // Absorbing on the replica is refused, like the module's command.
    let err = error_of(&mut r, &lib.absorb_cmd(b"a", &[b"30", b"60"]));
    assert!(err.starts_with("READONLY"), "{err}");
    // A denied call writes and replicates nothing.
    let offset = |c: &mut Connection| {
        shield_testkit::info_field(&c.info_section("replication"), "master_repl_offset")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let before = offset(&mut m);
    assert_eq!(lib.absorb(&mut m, "a", 30, 60, Some(13)), -1);
    assert_eq!(lib.absorb(&mut m, "nokey", 3, 60, Some(4)), -1);
    let _ = lib.inspect(&mut m, "a", 30, 60);
    assert_eq!(offset(&mut m), before);
}

// ---------------------------------------------------------------------------
// 4. Exactness.

/// The drained 10-tokens-per-second bucket polled every 90 ms admits
/// exactly 90 % of the calls. The server's clock cannot be driven, so time
/// is scaled: 10 tokens per 10^6 s, "90 ms" being 9 * 10^7 ms, and each
/// poll is made that much later by moving the bucket's stored full-again
/// moment (its expiry) back by as much, which is exactly what that much
/// waiting does to the state. The real time of the test (seconds) is below
/// 0.1 % of a token, so it crosses no token boundary.
#[test]
fn drained_bucket_polled_every_90_time_units_admits_exactly_90_percent() {
    let s = server_with_both();
    let mut c = s.conn();
    let (capacity, period) = (10u64, 1_000_000u64);
    let step_ms = 90_000_000i64;
    for engine in Engine::BOTH {
        let key = format!("poll:{engine}");
        assert_eq!(engine.absorb(&mut c, &key, capacity, period, Some(10)), 0);
        let mut admitted = 0;
        for _ in 0..1_000 {
            let (_, expire) = c.stored(&key);
            let _: () = redis::cmd("PEXPIREAT")
                .arg(&key)
                .arg(expire - step_ms)
                .query(&mut c)
                .unwrap();
            if engine.absorb(&mut c, &key, capacity, period, None) >= 0 {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 900, "{engine}");
    }
}

/// The library's range (capacity * period <= 8 * 10^12) and big numbers at
/// its edge, checked against the engine (whose range is wider).
#[test]
fn big_numbers_near_the_library_range_limit() {
    let s = server_with_both();
    let mut c = s.conn();
    let c = &mut c;
    let edge: [(u64, u64); 6] = [
        (8_000_000_000_000, 1),
        (1, 8_000_000_000),
        (800, 10_000_000_000),
        (999_999_999_989, 8),
        (2_828_427, 2_828_427),
        (4_000_000_000_000, 2),
    ];
    for engine in Engine::BOTH {
        for (i, (cap, period)) in edge.iter().copied().enumerate() {
            assert!(cap * period <= 8_000_000_000_000);
            let key = format!("edge{i}:{engine}");
            let takes = [(cap - 1).max(1), 1, cap, cap / 3 + 1, 1];
            for t in takes {
                run_checked(c, engine, &absorb(&key, cap, period, Some(t), true));
                run_checked(c, engine, &inspect(&key, cap, period));
            }
            run_checked(
                c,
                engine,
                &absorb_all_op(&[(&format!("{key}:b"), cap, period, cap / 2 + 1)]),
            );
        }
        // A remainder written by the module with capacity 10^15, read at the edge.
        let key = format!("wide:{engine}");
        let now = server_ms(c);
        set_px(
            c,
            &key,
            b"~999999999999999/1000000000000000",
            Some(now + 5_000),
        );
        run_checked(
            c,
            engine,
            &absorb(&key, 7_999_999_999_999, 1, Some(1), true),
        );
    }
    // Beyond the range: the library refuses, naming it; the module takes it.
    let err = error_of(
        c,
        &Engine::Library.absorb_cmd(b"wide", &[b"8000000000001", b"1"]),
    );
    assert_eq!(
        err,
        "ERR capacity times period is out of range for the redis-shield Functions library \
         (at most 8000000000000; load the module for more)"
    );
    for args in [
        &[&b"1000000000000000"[..], b"10000000000"][..],
        &[b"4000000000001", b"2"],
        &[b"801", b"10000000000"],
    ] {
        let err = error_of(c, &Engine::Library.inspect_cmd(b"wide", args));
        assert!(
            err.contains("out of range for the redis-shield Functions"),
            "{err}"
        );
    }
    assert_eq!(
        Engine::Module.absorb(c, "wide", 1_000_000_000_000_000, 10_000_000_000, Some(1)),
        999_999_999_999_999
    );
    // The module's key at that limit, read by the library with a limit in
    // its range: the foreign remainder is converted exactly.
    run_checked(
        c,
        Engine::Library,
        &absorb("wide", 1_000_000, 1_000, Some(1), true),
    );
}

/// Random limits over the whole range of the library (log-uniform, up to
/// capacity * period = 8 * 10^12) on random stored states (remainders of
/// any denominator up to 2^64 - 1, 1.x values, full-again moments beyond
/// the burst), through the library, each call checked against the engine.
#[test]
fn random_limits_across_the_library_range_match_the_engine() {
    let s = server_with_both();
    let mut c = s.conn();
    let c = &mut c;
    let mut rng = Rng::new();
    let log_uniform = |rng: &mut Rng, max: u64| {
        let digits = 1 + rng.below(u64::from(max.ilog10()) + 1) as u32;
        1 + rng.below(10u64.pow(digits).min(max))
    };
    for i in 0..300 {
        let capacity = log_uniform(&mut rng, 8_000_000_000_000);
        let period = log_uniform(&mut rng, (8_000_000_000_000 / capacity).min(10_000_000_000));
        assert!(capacity * period <= 8_000_000_000_000);
        let key = format!("r{i}");
        let now = server_ms(c);
        let expire = now + 1 + rng.below(period * 1500 + 2);
        let denominator = match rng.below(3) {
            0 => capacity,
            1 => 1 + rng.below(u64::MAX - 1),
            _ => log_uniform(&mut rng, 1_000_000_000_000_000_000),
        };
        let value = match rng.below(5) {
            0 => None,
            1 => Some(format!("~{}/{denominator}", rng.below(denominator))),
            2 => Some("~0".to_string()),
            3 => Some(rng.below(capacity + 2).to_string()),
            _ => Some(format!("~{}/{capacity}", rng.below(capacity))),
        };
        if let Some(v) = &value {
            set_px(c, &key, v.as_bytes(), Some(expire));
        }
        for _ in 0..3 {
            let tokens = match rng.below(3) {
                0 => 1,
                1 => 1 + rng.below(capacity),
                _ => capacity - rng.below(capacity.min(3)),
            };
            let op = match rng.below(3) {
                0 => inspect(&key, capacity, period),
                1 => absorb(&key, capacity, period, Some(tokens), rng.below(2) == 0),
                _ => absorb_all_op(&[(&key, capacity, period, tokens)]),
            };
            run_checked(c, Engine::Library, &op);
        }
    }
}

/// README's ACL line for the library: functions run their inner commands
/// with the caller's rights, so a user needs `FCALL`/`FCALL_RO` and the
/// commands the library calls (GET, SET, PTTL, PEXPIRETIME, TIME); with those
/// and a key pattern, every path of the three functions works (first call,
/// `~0` bucket, remainder, 1.x value, denied, inspect, absorball), and with
/// `FCALL` alone nothing does.
#[test]
fn library_acl_user_with_the_documented_commands_runs_every_path() {
    let server = Engine::Library.start_server();
    let mut admin = server.conn();
    let setuser = |admin: &mut Connection, name: &str, commands: &[&str]| {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(name)
            .arg(&["reset", "on", ">pw", "~rl:*", "-@all"])
            .arg(commands)
            .query(admin)
            .unwrap();
    };
    // README's line, and FCALL alone.
    setuser(
        &mut admin,
        "lim",
        &[
            "+fcall",
            "+fcall_ro",
            "+get",
            "+set",
            "+pttl",
            "+pexpiretime",
            "+time",
        ],
    );
    setuser(&mut admin, "bare", &["+fcall", "+fcall_ro"]);
    let user = |name: &str| {
        let url = format!("redis://{name}:pw@127.0.0.1:{}/", server.port());
        redis::Client::open(url).unwrap().get_connection().unwrap()
    };
    let mut lim = user("lim");
    let fcall = |c: &mut Connection, f: &str, args: &[&str]| -> redis::RedisResult<Value> {
        let mut cmd = redis::cmd(if f == "shield_inspect" {
            "FCALL_RO"
        } else {
            "FCALL"
        });
        cmd.arg(f);
        for a in args {
            cmd.arg(*a);
        }
        cmd.query(c)
    };
    // First call, then the ~0 bucket, then denied; then a remainder (the
    // general path).
    for (key, capacity, period, want) in [
        ("rl:a", "2", "60", 1),
        ("rl:a", "2", "60", 0),
        ("rl:a", "2", "60", -1),
        ("rl:r", "7", "1", 6),
        ("rl:r", "7", "1", 5),
    ] {
        let got = fcall(&mut lim, "shield_absorb", &["1", key, capacity, period]);
        assert_eq!(got.unwrap(), Value::Int(want), "{key}");
    }
    // WITHDETAILS, inspect, absorball.
    let details = fcall(
        &mut lim,
        "shield_absorb",
        &["1", "rl:r", "7", "1", "1", "WITHDETAILS"],
    );
    assert!(
        matches!(details, Ok(Value::Array(ref a)) if a.len() == 4),
        "{details:?}"
    );
    let view = fcall(&mut lim, "shield_inspect", &["1", "rl:r", "7", "1"]);
    assert!(
        matches!(view, Ok(Value::Array(ref a)) if a.len() == 4),
        "{view:?}"
    );
    let all = fcall(
        &mut lim,
        "shield_absorball",
        &["2", "rl:{u}1", "rl:{u}2", "5", "60", "1", "5", "60", "2"],
    );
    assert!(
        matches!(all, Ok(Value::Array(ref a)) if a.first() == Some(&int(1))),
        "{all:?}"
    );
    // A 1.x value, stored in the 2.x form by the first absorb.
    let _: () = redis::cmd("SET")
        .arg("rl:old")
        .arg("3")
        .query(&mut admin)
        .unwrap();
    assert_eq!(
        fcall(&mut lim, "shield_absorb", &["1", "rl:old", "5", "60"]).unwrap(),
        int(2)
    );
    // Outside the key pattern: the server's NOPERM, nothing written.
    let denied = fcall(&mut lim, "shield_absorb", &["1", "other", "2", "60"]).unwrap_err();
    assert!(
        format!("{denied:?}").contains("NOPERM") || format!("{denied:?}").contains("permission"),
        "{denied:?}"
    );
    let exists: i64 = redis::cmd("EXISTS").arg("other").query(&mut admin).unwrap();
    assert_eq!(exists, 0);
    // FCALL alone is not enough: the inner commands are checked.
    let mut bare = user("bare");
    let err = fcall(&mut bare, "shield_absorb", &["1", "rl:b", "2", "60"]).unwrap_err();
    // Redis 7.0: "... can't run this command ...", later: "ACL failure in
    // script: User bare has no permissions to run the 'get' command".
    let text = format!("{err:?}");
    assert!(
        text.contains("can't run this command") || text.contains("no permissions to run"),
        "{text}"
    );
    let exists: i64 = redis::cmd("EXISTS").arg("rl:b").query(&mut admin).unwrap();
    assert_eq!(exists, 0);
}
