//! `CL.THROTTLE`, redis-cell's command served by the exact engine: its
//! replies and stored keys on the server under test, then side by side with
//! redis-cell 0.5.0 itself (a Redis 7.0 with the module, see
//! `shield_testkit::anchors`): the same random calls on both, compared with
//! each other and with two models (exact arithmetic, and redis-cell's own
//! arithmetic); keys moved between the two through RDB, AOF and replication.
//!
//! How redis-cell computes (read from its source, then checked here call by
//! call): the emission interval T is `period_ns / count` truncated to the ns
//! (more permissive when the division is inexact); the bucket holds
//! `max_burst + 1` intervals; `remaining` divides whole microseconds by T in
//! whole microseconds (T below 1 µs divides by zero: i64::MAX); a wait's
//! whole seconds are rounded up only when its sub-second part has a whole
//! millisecond (a wait of 2.0004 s is replied as 2). Its clock is the
//! system's, in ns; ours is the server's, in ms.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shield_testkit::anchors::{redis7_shield_options, redis_cell_options};
use shield_testkit::compat::{
    ceil_div, check_exact, check_fresh_key, check_timing, five_integers, log_uniform,
    note_differences, print_sequences, random_burst, random_steps, run_until_judged, Reply,
    SideBySide, Step, Tally, TooSlow,
};
use shield_testkit::{
    info_field, module_path, server_binary, wait_until, Pair, Rng, Server, ServerOptions,
    ShieldCommands,
};

const NS_PER_S: i128 = 1_000_000_000;
const NS_PER_MS: i128 = 1_000_000;
const NOT_A_CELL_BUCKET: &str =
    "ERR the key holds a string that is not a CL.THROTTLE (redis-cell) bucket";

// ---------------------------------------------------------------- helpers

/// `CL.THROTTLE key max_burst count period [quantity]`, expecting its reply.
fn throttle(c: &mut redis::Connection, key: &str, l: Limit, quantity: Option<u64>) -> Reply {
    let mut cmd = redis::cmd("CL.THROTTLE");
    cmd.arg(key).arg(l.burst).arg(l.count).arg(l.period);
    if let Some(q) = quantity {
        cmd.arg(q);
    }
    let what = format!("CL.THROTTLE {key} {} {quantity:?}", l.args());
    five_integers(c, &cmd, &what)
}

/// The TAT a key holds (ns), or None when there is no key.
fn tat(c: &mut redis::Connection, key: &str) -> Option<i128> {
    let v: Option<String> = redis::cmd("GET").arg(key).query(c).unwrap();
    v.map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{key} holds {v:?}, not a TAT"))
    })
}

/// Stores a TAT the way redis-shield does: the value in ns, the key expiring
/// at the TAT rounded up to the ms (a TAT in the past deletes the key).
fn set_tat(c: &mut redis::Connection, key: &str, ns: i128) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(ns.to_string())
        .arg("PXAT")
        .arg(ceil_div(ns, NS_PER_MS).to_string())
        .query(c)
        .unwrap();
}

/// "Time passing" by `seconds`: the key's TAT moved that much earlier
/// (exact on both implementations: both read the same format).
fn shift(c: &mut redis::Connection, key: &str, seconds: u64) {
    if let Some(ns) = tat(c, key) {
        set_tat(c, key, ns - i128::from(seconds) * NS_PER_S);
    }
}

fn server_time_ns(c: &mut redis::Connection) -> i128 {
    let (s, us): (i128, i128) = redis::cmd("TIME").query(c).unwrap();
    s * NS_PER_S + us * 1000
}

fn exists(c: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(c).unwrap() == 1
}

fn repl_offset(c: &mut redis::Connection) -> i64 {
    info_field(&c.info_section("replication"), "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .expect("master_repl_offset")
}

// ---------------------------------------------------------------- models

/// `max_burst count period`: a bucket of `max_burst + 1` tokens refilling
/// `count` every `period` seconds.
#[derive(Clone, Copy, Debug)]
struct Limit {
    burst: u64,
    count: u64,
    period: u64,
}

impl Limit {
    const fn new(burst: u64, count: u64, period: u64) -> Limit {
        Limit {
            burst,
            count,
            period,
        }
    }
    fn args(&self) -> String {
        format!("{} {} {}", self.burst, self.count, self.period)
    }
    fn capacity(&self) -> i128 {
        i128::from(self.burst) + 1
    }
    /// The models count time in units of 1/count ns, in which the exact
    /// interval (period * 10^9 / count ns) is whole.
    fn units_per_ns(&self) -> i128 {
        i128::from(self.count)
    }
    fn second(&self) -> i128 {
        NS_PER_S * self.units_per_ns()
    }
    /// redis-cell's interval: `(period_ns as f64 / count as f64) as i64`.
    fn cell_interval_ns(&self) -> i128 {
        let ns = i128::from(self.period) * NS_PER_S;
        i128::from((ns as f64 / self.count as f64) as i64)
    }
    fn inexact(&self) -> bool {
        self.cell_interval_ns() * i128::from(self.count) != i128::from(self.period) * NS_PER_S
    }
    /// The interval in units.
    fn interval(&self, quirks: Quirks) -> i128 {
        if quirks.truncated_interval {
            self.cell_interval_ns() * self.units_per_ns()
        } else {
            i128::from(self.period) * NS_PER_S
        }
    }
}

/// What redis-cell does differently from exact arithmetic; all off is the
/// exact bucket (what redis-shield must answer), all on is redis-cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quirks {
    truncated_interval: bool,
    ms_rounding: bool,
    us_remaining: bool,
}

const EXACT: Quirks = Quirks {
    truncated_interval: false,
    ms_rounding: false,
    us_remaining: false,
};
const REDIS_CELL: Quirks = Quirks {
    truncated_interval: true,
    ms_rounding: true,
    us_remaining: true,
};

/// The documented differences: each is redis-cell with that quirk turned off.
const CAUSES: [(&str, Quirks); 3] = [
    (
        "redis-cell truncates its emission interval to the ns",
        Quirks {
            truncated_interval: false,
            ..REDIS_CELL
        },
    ),
    (
        "redis-cell rounds a wait's sub-millisecond part down",
        Quirks {
            ms_rounding: false,
            ..REDIS_CELL
        },
    ),
    (
        "redis-cell divides whole microseconds (interval truncated to the µs; below 1 µs it divides by 0)",
        Quirks {
            us_remaining: false,
            ..REDIS_CELL
        },
    ),
];

/// redis-cell's whole seconds of a duration: `as_seconds_f64() as i64`, plus
/// one when `subsec_milliseconds() > 0`.
fn cell_seconds(ns: i128) -> i64 {
    let (s, n) = (ns / NS_PER_S, ns % NS_PER_S);
    let f = s as f64 + n as f64 / 1e9;
    (f as i64) + i64::from(n / NS_PER_MS > 0)
}

/// `CL.THROTTLE` on a bucket whose TAT is `ttl` units after now (0: full,
/// or no key): the reply, and the TAT after the call (units after now).
fn model(l: Limit, quirks: Quirks, ttl: i128, quantity: u64) -> (Reply, i128) {
    let t = l.interval(quirks);
    let dvt = t * l.capacity();
    let new = ttl + t * i128::from(quantity);
    let seconds = |d: i128| {
        if quirks.ms_rounding {
            cell_seconds(d.div_euclid(l.units_per_ns()))
        } else {
            i64::try_from(ceil_div(d, l.second())).unwrap()
        }
    };
    let (limited, retry, after) = if new > dvt {
        let retry = if i128::from(quantity) <= l.capacity() {
            seconds(new - dvt)
        } else {
            -1
        };
        (true, retry, ttl)
    } else {
        (false, -1, new)
    };
    let next = dvt - after;
    let remaining = if quirks.us_remaining {
        if next > -t {
            let whole_us = |u: i128| u.div_euclid(l.units_per_ns()) / 1000;
            (whole_us(next) as f64 / whole_us(t) as f64) as i64
        } else {
            0
        }
    } else {
        i64::try_from(next.div_euclid(t)).unwrap()
    };
    let reply = [
        i64::from(limited),
        i64::try_from(l.capacity()).unwrap(),
        remaining,
        retry,
        seconds(after),
    ];
    (reply, after)
}

const FIELDS: [&str; 5] = [
    "limited",
    "limit",
    "remaining",
    "retry_after",
    "reset_after",
];

/// Checks one call: redis-shield's reply against exact arithmetic,
/// redis-cell's against its own model, and every field where they differ
/// against the documented differences (each must go the conservative way).
/// `exact_ttl`, `cell_ttl`: the bucket before the call in each model (units).
fn compare(
    tally: &mut Tally,
    what: &str,
    l: Limit,
    quantity: u64,
    (ours, exact_ttl): (Reply, i128),
    (theirs, cell_ttl): (Reply, i128),
) {
    let (exact, _) = model(l, EXACT, exact_ttl, quantity);
    check_exact(tally, what, ours, exact);
    let (cell, _) = model(l, REDIS_CELL, cell_ttl, quantity);
    assert_eq!(
        theirs, cell,
        "{what}: redis-cell differs from its model (left: redis-cell, right: model)"
    );
    let pair = (ours, theirs);
    note_differences(
        tally,
        what,
        &FIELDS,
        pair,
        "redis-cell",
        |i, field, ours_stricter| {
            // The quirks that, turned off one at a time, make redis-cell's
            // field redis-shield's.
            let causes: Vec<&str> = CAUSES
                .iter()
                .filter(|&&(_, quirks)| {
                    let ttl = if quirks.truncated_interval {
                        cell_ttl
                    } else {
                        exact_ttl
                    };
                    model(l, quirks, ttl, quantity).0[i] == ours[i]
                })
                .map(|(cause, _)| *cause)
                .collect();
            // redis-shield is exact (checked above): where redis-cell is the
            // stricter one, one of its documented roundings must say why.
            assert!(
                ours_stricter || !causes.is_empty(),
                "{what}: {field} {} (redis-shield) vs {} (redis-cell): redis-cell is the stricter \
             one, and none of its documented roundings explains it",
                ours[i],
                theirs[i]
            );
            let cause = if causes.is_empty() {
                "several of redis-cell's roundings together".to_string()
            } else {
                causes.join(" + ")
            };
            let direction = if ours_stricter {
                "redis-shield the stricter"
            } else {
                "redis-cell the stricter"
            };
            format!("{field} ({direction}): {cause}")
        },
    );
}

// ------------------------------------------- 1. replies and storage (ours alone)

#[test]
fn documented_example_and_the_stored_tat() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let before = server_time_ns(&mut c);
    assert_eq!(
        throttle(&mut c, "user123", Limit::new(15, 30, 60), None),
        [0, 16, 15, -1, 2]
    );
    let after = server_time_ns(&mut c);
    // The TAT in ns: the call's millisecond plus one interval of 2 s.
    let (value, expire) = c.stored("user123");
    let ns: i128 = String::from_utf8(value.unwrap()).unwrap().parse().unwrap();
    assert_eq!(ns % NS_PER_MS, 0, "a whole ms plus 2 s: {ns}");
    let called_at = ns - 2 * NS_PER_S;
    assert!(
        before - NS_PER_MS < called_at && called_at <= after,
        "{called_at} outside [{before}, {after}]"
    );
    assert_eq!(i128::from(expire), ns / NS_PER_MS);

    // An inexact interval (1/3 s): the TAT is rounded up to the ns, its
    // expiry up to the ms.
    assert_eq!(
        throttle(&mut c, "third", Limit::new(0, 3, 1), None),
        [0, 1, 0, -1, 1]
    );
    let (value, expire) = c.stored("third");
    let third: i128 = String::from_utf8(value.unwrap()).unwrap().parse().unwrap();
    assert_eq!(
        third % NS_PER_MS,
        333_334,
        "ceil(10^9 / 3) after a whole ms: {third}"
    );
    assert_eq!(i128::from(expire), ceil_div(third, NS_PER_MS));

    // Seven more tokens of user123: 8 left; the key keeps the ns format.
    assert_eq!(
        throttle(&mut c, "user123", Limit::new(15, 30, 60), Some(7)),
        [0, 16, 8, -1, 16]
    );
    // The TAT moved by exactly 7 intervals of 2 s.
    let (value, expire) = c.stored("user123");
    let ns2: i128 = String::from_utf8(value.unwrap()).unwrap().parse().unwrap();
    assert_eq!(ns2, ns + 14 * NS_PER_S);
    assert_eq!(i128::from(expire), ns2 / NS_PER_MS);
}

#[test]
fn a_peek_writes_nothing_and_replicates_nothing() {
    let Pair { master, replica } = Pair::replica_without_module();
    let mut m = master.conn();
    let l = Limit::new(4, 1, 10);
    // No key: a full bucket, and still no key.
    let offset = repl_offset(&mut m);
    assert_eq!(throttle(&mut m, "p", l, Some(0)), [0, 5, 5, -1, 0]);
    assert!(!exists(&mut m, "p"));
    assert_eq!(repl_offset(&mut m), offset);
    // An existing key: value, expiry and replication offset unchanged.
    assert_eq!(throttle(&mut m, "p", l, Some(3)), [0, 5, 2, -1, 30]);
    assert_eq!(m.wait_replicas(1), 1);
    let stored = m.stored("p");
    let offset = repl_offset(&mut m);
    assert_eq!(throttle(&mut m, "p", l, Some(0)), [0, 5, 2, -1, 30]);
    assert_eq!(m.stored("p"), stored);
    // A denied call writes nothing either.
    assert_eq!(throttle(&mut m, "p", l, Some(4))[..3], [1, 5, 2]);
    assert_eq!(m.stored("p"), stored);
    assert_eq!(repl_offset(&mut m), offset);
    assert_eq!(replica.conn().stored("p"), stored);
}

#[test]
fn a_bad_stored_value_is_an_error_and_the_server_stays_up() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let args = &["k", "15", "30", "60"][..];
    for bad in [
        "hello",
        "-5",
        "1.5",
        " 1",
        "",
        "99999999999999999999999",
        "~0",
    ] {
        let _: () = redis::cmd("SET").arg("k").arg(bad).query(&mut c).unwrap();
        assert_eq!(
            c.command_err("CL.THROTTLE", args),
            NOT_A_CELL_BUCKET,
            "{bad:?}"
        );
        assert_eq!(
            c.command_err("CL.THROTTLE", &["k", "15", "30", "60", "0"][..]),
            NOT_A_CELL_BUCKET,
            "peek on {bad:?}"
        );
        let v: Vec<u8> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        assert_eq!(v, bad.as_bytes(), "the bad value is left alone");
    }
    let _: () = redis::cmd("DEL").arg("k").query(&mut c).unwrap();
    let _: () = redis::cmd("RPUSH").arg("k").arg("x").query(&mut c).unwrap();
    assert!(c.command_err("CL.THROTTLE", args).starts_with("WRONGTYPE"));
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(
        throttle(&mut c, "fine", Limit::new(15, 30, 60), None),
        [0, 16, 15, -1, 2]
    );
}

#[test]
fn argument_errors() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    for args in [&["k", "1", "1"][..], &["k", "1", "1", "1", "1", "1"]] {
        let err = c.command_err("CL.THROTTLE", args);
        assert!(
            err.to_lowercase().contains("wrong number of arguments"),
            "{args:?}: {err}"
        );
    }
    for args in [
        ["k", "-1", "1", "1", "1"],
        ["k", "x", "1", "1", "1"],
        ["k", "1", "0", "1", "1"],
        ["k", "1", "1", "0", "1"],
        ["k", "1", "1", "1", "-1"],
    ] {
        let err = c.command_err("CL.THROTTLE", &args[..]);
        assert!(err.starts_with("ERR"), "{args:?}: {err}");
    }
    assert!(!exists(&mut c, "k"));
}

#[test]
fn a_replica_without_the_module_holds_the_same_bytes() {
    let pair = Pair::replica_without_module();
    let mut m = pair.master.conn();
    let calls = [
        ("a", Limit::new(15, 30, 60), Some(1)),
        ("a", Limit::new(15, 30, 60), Some(7)),
        ("inexact", Limit::new(9, 7, 60), Some(3)),
        ("inexact", Limit::new(9, 7, 60), Some(20)),
        ("fast", Limit::new(1000, 3000, 1), Some(999)),
        ("hour", Limit::new(0, 1, 3600), None),
        ("{tag}x", Limit::new(4, 1, 10), Some(5)),
    ];
    for (key, l, q) in calls {
        throttle(&mut m, key, l, q);
    }
    pair.assert_same_bytes(&mut m, &["a", "inexact", "fast", "hour", "{tag}x"]);
}

/// A server started with `args` after `--loadmodule <module>` must fail to
/// start; returns what it printed.
fn load_fails(args: &[&str]) -> String {
    let dir = DataDir::new("load");
    let dir = &dir.0;
    let log = dir.join("out.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(server_binary())
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .arg("--unixsocket")
        .arg(dir.join("s.sock"))
        .arg("--loadmodule")
        .arg(module_path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started with module arguments {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{args:?}: exit {status}\n{text}");
    text
}

#[test]
fn module_arguments_turn_the_compatibility_commands_off() {
    let module = module_path().to_str().unwrap().to_string();
    let s = Server::start(
        ServerOptions::default()
            .without_module()
            .arg("--loadmodule")
            .arg(module.clone())
            .arg("NO-CL.THROTTLE")
            .arg("no-gcra"),
    );
    let mut c = s.conn();
    for command in ["CL.THROTTLE", "GCRA"] {
        let err = c.command_err(command, &["k", "1", "1", "1"][..]);
        assert!(
            err.to_lowercase().contains("unknown command"),
            "{command}: {err}"
        );
    }
    assert_eq!(c.absorb("k", 1, 1, None), 0);
    drop(c);
    drop(s);

    let s = Server::start(
        ServerOptions::default()
            .without_module()
            .arg("--loadmodule")
            .arg(module)
            .arg("NO-GCRA"),
    );
    let mut c = s.conn();
    assert_eq!(
        throttle(&mut c, "k", Limit::new(15, 30, 60), None),
        [0, 16, 15, -1, 2]
    );
    let err = c.command_err("GCRA", &["k", "1", "1", "1"][..]);
    assert!(err.to_lowercase().contains("unknown command"), "{err}");

    let out = load_fails(&["NO-CL.THROTTLE", "BOGUS"]);
    assert!(
        out.contains("unknown module argument 'BOGUS'"),
        "the log should name the argument:\n{out}"
    );
}

// ------------------------------------------- 2. differential against redis-cell

/// redis-shield on the server under test, redis-cell on Redis 7.0.
fn side_by_side() -> SideBySide {
    SideBySide::start(redis_cell_options())
}

/// One call on a fresh key at any rate, fast ones included: the reply does
/// not depend on the clock (the bucket is full, the TAT starts at "now"), so
/// the two implementations can be compared at rates where the microseconds
/// between the two calls would otherwise matter.
#[test]
fn differential_fresh_keys_at_any_rate() {
    let mut both = side_by_side();
    let mut rng = Rng::new();
    let mut tally = Tally::default();
    // Cases each difference shows on, then random ones.
    let known = [
        (Limit::new(999, 3000, 1), 0),    // remaining 1001 of 1000
        (Limit::new(5, 2_000_000, 1), 1), // interval of 500 ns: remaining i64::MAX
        (Limit::new(2, 1_296_713, 1), 2), // 771 ns left: 0 whole µs
        (Limit::new(0, 8206, 6), 1),      // a wait of 0.73 ms: 0 s
        (Limit::new(0, 3, 1), 1),         // an inexact interval: 333333333 ns
        (Limit::new(15, 30, 60), 1),      // the documented example
    ];
    let random = (0..400).map(|_| {
        let period = log_uniform(&mut rng, 1, 100_000);
        let count = log_uniform(&mut rng, 1, 10_000_000);
        // At most 10^6 s for the whole bucket (redis-cell's f64 seconds stay exact).
        let max_burst = (1_000_000u128 * u128::from(count) / u128::from(period)).min(2_000_000);
        let burst = log_uniform(&mut rng, 1, max_burst.max(1) as u64 + 1) - 1;
        let l = Limit::new(burst, count, period);
        let cap = burst + 1;
        let quantity = match rng.below(6) {
            0 => 0,
            1 => 1,
            2 => cap,
            3 => cap + 1 + rng.below(3),
            _ => 1 + rng.below(cap),
        };
        (l, quantity)
    });
    let calls: Vec<(Limit, u64)> = known.into_iter().chain(random).collect();
    for (i, (l, quantity)) in calls.into_iter().enumerate() {
        let (count, period) = (l.count, l.period);
        let key = format!("fresh{i}");
        let ours = throttle(&mut both.ours, &key, l, Some(quantity));
        let theirs = throttle(&mut both.theirs, &key, l, Some(quantity));
        let what = format!("CL.THROTTLE {key} {} {quantity} (fresh key)", l.args());
        compare(&mut tally, &what, l, quantity, (ours, 0), (theirs, 0));
        // Ours: the TAT is the call's whole ms plus the exact quantity's time, rounded up.
        let stored = tat(&mut both.ours, &key);
        let drained = (ours[0] == 0 && quantity > 0).then(|| {
            ceil_div(
                i128::from(quantity) * i128::from(period) * NS_PER_S,
                i128::from(count),
            )
        });
        let units = (NS_PER_MS, NS_PER_S);
        check_fresh_key(&what, stored, drained, units, "a peek or a denial");
    }
    tally.print("CL.THROTTLE vs redis-cell, fresh keys");
}

/// Runs `steps` on a fresh key of both implementations and checks every
/// call (see `compare`) and every stored TAT.
///
/// Time is simulated: before a call, both TATs move back by the same whole
/// seconds. Between the full moments of a bucket nothing else depends on
/// the clock, and the positions that matter (multiples of 10^9/count ns
/// from a full moment) are at least 83 ms away from where the simulated
/// clock stands, so the real time the calls take does not change any reply
/// while it stays under half of that. At each full moment the two
/// implementations start from their own clocks (redis-shield's ms,
/// redis-cell's ns): redis-cell's new TAT is then replaced by the one it
/// would have computed at redis-shield's ms (a shift of under a
/// millisecond), so that both count from the same instant.
fn run_sequence(
    both: &mut SideBySide,
    key: &str,
    l: Limit,
    steps: &[Step],
) -> Result<Tally, TooSlow> {
    let mut tally = Tally::default();
    let budget = Duration::from_nanos((1_000_000_000 / l.count) / 2);
    let count = l.units_per_ns();
    // The models' buckets: TAT minus the simulated now, in units (<= 0: full).
    let (mut exact, mut cell) = (0i128, 0i128);
    // The last full moment: redis-shield's ms (in ns), and when it was.
    let mut origin: Option<(i128, Instant)> = None;
    for (n, &(delta, quantity)) in steps.iter().enumerate() {
        if delta > 0 {
            shift(&mut both.ours, key, delta);
            shift(&mut both.theirs, key, delta);
            exact -= i128::from(delta) * l.second();
            cell -= i128::from(delta) * l.second();
        }
        let (exact_ttl, cell_ttl) = (exact.max(0), cell.max(0));
        let (_, exact_after) = model(l, EXACT, exact_ttl, quantity);
        let (_, cell_after) = model(l, REDIS_CELL, cell_ttl, quantity);
        let called = Instant::now();
        let ours = throttle(&mut both.ours, key, l, Some(quantity));
        let theirs = throttle(&mut both.theirs, key, l, Some(quantity));
        let mut new_origin = None;
        if exact_ttl == 0 && exact_after > 0 {
            // A full moment: redis-shield's TAT is its ms plus the
            // quantity's time; redis-cell's becomes the one it would have
            // computed at that ms.
            let Some(ns) = tat(&mut both.ours, key) else {
                return Err(TooSlow(called.elapsed()));
            };
            let at = ns - ceil_div(exact_after, count);
            set_tat(&mut both.theirs, key, at + cell_after / count);
            new_origin = Some((at, called));
        }
        let ours_tat = tat(&mut both.ours, key);
        let theirs_tat = tat(&mut both.theirs, key);
        check_timing(exact_ttl + exact_after > 0, new_origin.or(origin), budget)?;
        let what = format!(
            "CL.THROTTLE {key} {} {quantity} (step {n}, after {delta} s; steps {steps:?})",
            l.args()
        );
        compare(
            &mut tally,
            &what,
            l,
            quantity,
            (ours, exact_ttl),
            (theirs, cell_ttl),
        );
        if let Some((at, _)) = new_origin {
            assert_eq!(at % NS_PER_MS, 0, "{what}: our TAT {ours_tat:?}");
            origin = new_origin;
        }
        (exact, cell) = (exact_after, cell_after);
        // The stored TATs: each what its model says, ours never before theirs.
        let (at, _) = origin.unwrap_or((0, called));
        if exact > 0 {
            assert_eq!(
                ours_tat,
                Some(at + ceil_div(exact, count)),
                "{what}: our TAT"
            );
            assert_eq!(
                theirs_tat,
                Some(at + cell / count),
                "{what}: redis-cell's TAT"
            );
            assert!(ours_tat.unwrap() >= theirs_tat.unwrap() - 1, "{what}");
        } else {
            // Full: no key, or one whose TAT has passed (redis-cell's peek
            // writes "now" with a TTL of 0).
            assert!(ours_tat.is_none_or(|t| t <= at), "{what}: {ours_tat:?}");
            if let Some(t) = theirs_tat {
                assert!(t <= server_time_ns(&mut both.theirs), "{what}: {t}");
            }
        }
    }
    Ok(tally)
}

/// Random sequences at slow rates (at most 12 tokens per period: 83 ms or
/// more between the positions that matter), exact intervals and inexact
/// ones (count not dividing period * 10^9), with peeks, quantities above the
/// limit, and time passing by whole seconds.
#[test]
fn differential_sequences_with_time_passing() {
    let mut both = side_by_side();
    let mut rng = Rng::new();
    let mut tally = Tally::default();
    let mut too_slow = Vec::new();
    let periods = [1, 2, 3, 5, 7, 10, 30, 60, 90, 3600];
    let mut inexact = 0;
    for s in 0..80 {
        let count = 1 + rng.below(12);
        let period = periods[rng.below(periods.len() as u64) as usize];
        let burst = random_burst(&mut rng);
        let l = Limit::new(burst, count, period);
        inexact += u32::from(l.inexact());
        let cap = burst + 1;
        let full_s = (u128::from(cap) * u128::from(period)).div_ceil(u128::from(count)) as u64;
        let steps = random_steps(&mut rng, full_s, cap, true);
        run_until_judged(s, &mut tally, &mut too_slow, |key| {
            run_sequence(&mut both, key, l, &steps)
        });
    }
    assert!(inexact > 0, "no inexact interval was drawn");
    print_sequences(
        &tally,
        &format!("CL.THROTTLE vs redis-cell, 80 sequences ({inexact} with an inexact interval)"),
        &too_slow,
    );
}

// ------------------------------------------- 3. moving keys between the two

/// A data directory shared by successive servers; removed unless the test fails.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "redis-shield-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept data dir {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Stops a server with `SHUTDOWN SAVE` (RDB written, AOF flushed).
fn shutdown_save(mut s: Server) {
    let mut c = s.conn();
    let _ = redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c);
    s.stop();
}

fn on(opts: ServerOptions, dir: &DataDir, aof: bool) -> Server {
    Server::start(opts.appendonly(aof).arg("--dir").arg(dir.path()))
}

const DRAINED: Limit = Limit::new(4, 1, 3600); // 5 tokens, one an hour
const PARTIAL: Limit = Limit::new(9, 1, 3600); // 10 tokens, one an hour
const ODD: Limit = Limit::new(9, 7, 3600); // 10 tokens, 7 an hour: inexact interval

/// `drained` emptied (5 of 5 tokens), 3 of `partial`'s 10 taken.
fn drain_and_take_3(c: &mut redis::Connection) {
    assert_eq!(
        throttle(c, "drained", DRAINED, Some(5)),
        [0, 5, 0, -1, 18000]
    );
    assert_eq!(
        throttle(c, "partial", PARTIAL, Some(3)),
        [0, 10, 7, -1, 10800]
    );
}

/// What redis-shield stores after reading a TAT written by someone else
/// (`theirs`, in ns) and taking `quantity`: the TAT is read as the first of
/// its ticks (1/count ms) on or after it, then moves by the exact interval.
fn ours_after_reading(l: Limit, theirs: i128, quantity: u64) -> i128 {
    let ticks_per_ms = i128::from(l.count);
    let read = ceil_div(theirs * ticks_per_ms, NS_PER_MS);
    let after = read + i128::from(quantity) * i128::from(l.period) * 1000;
    ceil_div(after * NS_PER_MS, ticks_per_ms)
}

/// Calls on redis-cell; the same data directory restarted with redis-shield
/// (Redis 7.0 both), more calls; back to redis-cell, more calls. The buckets
/// continue exactly: what one stored is what the other reads (ours rounds a
/// TAT it did not write up to its tick, 1/count ms).
fn migrate_both_ways(aof: bool) {
    let dir = DataDir::new(if aof { "cell-aof" } else { "cell-rdb" });
    let keys = ["drained", "partial", "odd"];
    let snapshot = |c: &mut redis::Connection| keys.map(|k| c.stored(k));
    // Saves and stops `from`, then starts `opts` on its data: the new server,
    // a connection, and the keys and TATs handed over (checked loaded as saved).
    let hand_over = |from: Server, mut c: redis::Connection, opts: ServerOptions, who: &str| {
        let before = snapshot(&mut c);
        let tats = keys.map(|k| tat(&mut c, k).unwrap());
        drop(c);
        shutdown_save(from);
        let to = on(opts, &dir, aof);
        let mut c = to.conn();
        assert_eq!(snapshot(&mut c), before, "the keys {who} loaded");
        (to, c, before, tats)
    };

    let cell = on(redis_cell_options(), &dir, aof);
    let mut c = cell.conn();
    let start = Instant::now();
    drain_and_take_3(&mut c);
    assert_eq!(throttle(&mut c, "odd", ODD, Some(2))[..3], [0, 10, 8]);
    if aof {
        // redis-cell's AOF holds its commands verbatim: rewrite it, so that
        // it holds the keys (an AOF of commands is the next test).
        rewrite_aof(&mut c);
    }
    let (shield, mut c, before, cell_tats) =
        hand_over(cell, c, redis7_shield_options(), "redis-shield");
    // Still drained; remaining goes on from 7 and 8.
    let reply = throttle(&mut c, "drained", DRAINED, None);
    assert_near(reply, [1, 5, 0, 3600, 18000], start);
    let reply = throttle(&mut c, "partial", PARTIAL, None);
    assert_near(reply, [0, 10, 6, -1, 14400], start);
    assert_eq!(throttle(&mut c, "odd", ODD, None)[..4], [0, 10, 7, -1]);
    assert_eq!(
        c.stored("drained"),
        before[0],
        "a denied call writes nothing"
    );
    assert_eq!(
        tat(&mut c, "partial").unwrap(),
        ours_after_reading(PARTIAL, cell_tats[1], 1)
    );
    assert_eq!(
        tat(&mut c, "odd").unwrap(),
        ours_after_reading(ODD, cell_tats[2], 1)
    );
    let (_cell, mut c, _, shield_tats) = hand_over(shield, c, redis_cell_options(), "redis-cell");
    let reply = throttle(&mut c, "drained", DRAINED, None);
    assert_near(reply, [1, 5, 0, 3600, 18000], start);
    let reply = throttle(&mut c, "partial", PARTIAL, Some(2));
    assert_near(reply, [0, 10, 4, -1, 21600], start);
    assert_eq!(throttle(&mut c, "odd", ODD, Some(3))[..4], [0, 10, 4, -1]);
    // redis-cell adds its own interval to the TAT redis-shield stored.
    assert_eq!(
        tat(&mut c, "partial").unwrap(),
        shield_tats[1] + 2 * PARTIAL.cell_interval_ns()
    );
    assert_eq!(
        tat(&mut c, "odd").unwrap(),
        shield_tats[2] + 3 * ODD.cell_interval_ns()
    );
}

/// `reply` is `expected` `since` then: the same decision and tokens, waits
/// at most the whole seconds elapsed shorter.
fn assert_near(reply: Reply, expected: Reply, since: Instant) {
    let slack = i64::try_from(since.elapsed().as_secs()).unwrap() + 1;
    assert_eq!(reply[..3], expected[..3], "{reply:?} vs {expected:?}");
    for i in [3, 4] {
        let ok = if expected[i] <= 0 {
            reply[i] == expected[i]
        } else {
            (expected[i] - slack..=expected[i]).contains(&reply[i])
        };
        assert!(ok, "{reply:?} vs {expected:?}, {slack} s later");
    }
}

fn rewrite_aof(c: &mut redis::Connection) {
    let _: String = redis::cmd("BGREWRITEAOF").query(c).unwrap();
    wait_until(Duration::from_secs(30), "the AOF rewrite", || {
        let info = c.info_section("persistence");
        info_field(&info, "aof_rewrite_in_progress").as_deref() == Some("0")
            && info_field(&info, "aof_rewrite_scheduled").as_deref() == Some("0")
    });
}

#[test]
fn migration_through_rdb_both_ways() {
    migrate_both_ways(false);
}

#[test]
fn migration_through_a_rewritten_aof_both_ways() {
    migrate_both_ways(true);
}

/// redis-cell's AOF holds its CL.THROTTLE commands verbatim: redis-shield
/// replays them at load, with the clock of the load. The buckets are then at
/// least as drained as they were (never more permissive), not identical.
#[test]
fn migration_through_an_aof_of_redis_cell_commands() {
    let dir = DataDir::new("cell-aof-commands");
    let cell = on(redis_cell_options(), &dir, true);
    let mut c = cell.conn();
    drain_and_take_3(&mut c);
    assert_eq!(throttle(&mut c, "partial", PARTIAL, Some(0))[2], 7);
    assert_eq!(
        throttle(&mut c, "partial", PARTIAL, Some(99))[..3],
        [1, 10, 7]
    );
    let tats = ["drained", "partial"].map(|k| tat(&mut c, k).unwrap());
    drop(c);
    shutdown_save(cell);

    let shield = on(redis7_shield_options(), &dir, true);
    let mut c = shield.conn();
    for (key, before) in ["drained", "partial"].into_iter().zip(tats) {
        let after = tat(&mut c, key).unwrap();
        assert!(
            after >= before,
            "{key}: replayed TAT {after} before the original {before}"
        );
        eprintln!(
            "{key}: replayed by redis-shield {:.3} ms after redis-cell's TAT",
            (after - before) as f64 / 1e6
        );
    }
    assert_eq!(throttle(&mut c, "drained", DRAINED, None)[..3], [1, 5, 0]);
    assert_eq!(throttle(&mut c, "partial", PARTIAL, None)[..3], [0, 10, 6]);
}

/// A master with redis-shield, a replica with redis-cell (Redis 7.0 both):
/// redis-shield replicates its effect as `SET key <ns> PXAT <ms>`, so the
/// replica holds the same bytes and expiry, and serves them on.
#[test]
fn a_redis_cell_replica_of_a_redis_shield_master_is_identical() {
    let Pair { master, replica } = Pair::start(redis7_shield_options(), redis_cell_options());
    let mut m = master.conn();
    throttle(&mut m, "drained", DRAINED, Some(5));
    throttle(&mut m, "partial", PARTIAL, Some(3));
    throttle(&mut m, "odd", ODD, Some(2));
    throttle(&mut m, "odd", ODD, Some(0));
    assert_eq!(m.wait_replicas(1), 1);
    let mut r = replica.conn();
    for key in ["drained", "partial", "odd"] {
        assert_eq!(r.stored(key), m.stored(key), "{key}");
    }
}

/// The reverse: redis-cell replicates `CL.THROTTLE` verbatim, so a replica
/// computes the TAT again with its own clock, whatever serves the command
/// there. With redis-shield on the replica the TATs differ by the
/// replication delay and the clocks' granularity (redis-cell's ns, the
/// replica's ms): within a millisecond or so here, not byte-identical.
#[test]
fn a_redis_shield_replica_of_a_redis_cell_master_recomputes() {
    let Pair { master, replica } = Pair::start(redis_cell_options(), redis7_shield_options());
    let mut m = master.conn();
    let mut r = replica.conn();
    let calls = [
        ("drained", DRAINED, 5),
        ("drained", DRAINED, 1),
        ("partial", PARTIAL, 3),
        ("odd", ODD, 2),
        ("odd", ODD, 1),
    ];
    for (key, l, q) in calls {
        throttle(&mut m, key, l, Some(q));
    }
    assert_eq!(m.wait_replicas(1), 1);
    for key in ["drained", "partial", "odd"] {
        let (on_master, on_replica) = (tat(&mut m, key).unwrap(), tat(&mut r, key).unwrap());
        let diff = on_replica - on_master;
        eprintln!(
            "{key}: the replica's TAT is {:.3} ms after the master's",
            diff as f64 / 1e6
        );
        assert!(
            (-NS_PER_MS..=1000 * NS_PER_MS).contains(&diff),
            "{key}: master {on_master}, replica {on_replica}"
        );
    }
}

#[test]
fn the_anchor_paths_are_checked() {
    // A missing anchor fails with the command that builds it.
    let missing = Path::new("/nonexistent/libredis_cell.so");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "anchor_probe",
            "--include-ignored",
            "--nocapture",
        ])
        .env("SHIELD_REDIS_CELL", missing)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("build-anchors.sh") && text.contains("/nonexistent/libredis_cell.so"),
        "{text}"
    );
}

/// Run by `the_anchor_paths_are_checked` in a child process.
#[test]
#[ignore = "run by the_anchor_paths_are_checked"]
fn anchor_probe() {
    let _ = shield_testkit::anchors::redis_cell_module();
}
