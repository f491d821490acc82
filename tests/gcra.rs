//! `GCRA`, the command Redis designed for its core (held out of 8.8), served
//! by the exact engine on servers without their own: its replies, errors and
//! stored keys on the server under test, then side by side with the native
//! command (a Redis unstable build with GCRA compiled in, see
//! `shield_testkit::anchors`): the same random calls on both, compared with
//! each other and with two models (exact arithmetic, and the native
//! command's own arithmetic).
//!
//! How the native command computes (read from its source, then checked here
//! call by call): the emission interval is `period * 10^6 / tokens_per_period`
//! rounded to the nearest whole microsecond (at least 1 µs); the bucket
//! holds `max_burst + 1` intervals; the TAT is kept in µs in a key of its own
//! type, expiring at the TAT rounded down to the ms; the clock is the
//! server's, in ms; waits are rounded up to whole seconds.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use shield_testkit::anchors::native_gcra_options;
use shield_testkit::compat::{
    ceil_div, check_exact, check_fresh_key, check_timing, five_integers, log_uniform,
    note_differences, print_sequences, random_burst, random_steps, run_until_judged, Reply,
    SideBySide, Step, Tally, TooSlow,
};
use shield_testkit::{module_path, Pair, Rng, Server, ServerOptions, ShieldCommands};

const US_PER_S: i128 = 1_000_000;

// ---------------------------------------------------------------- helpers

/// `GCRA key max_burst tokens_per_period period [TOKENS count]`, expecting its reply.
fn gcra(c: &mut redis::Connection, key: &str, g: Gcra, tokens: Option<u64>) -> Reply {
    let mut cmd = redis::cmd("GCRA");
    cmd.arg(key).arg(g.burst).arg(g.tokens).arg(g.period_text());
    if let Some(t) = tokens {
        cmd.arg("TOKENS").arg(t);
    }
    let what = format!("GCRA {key} {} TOKENS {tokens:?}", g.args());
    five_integers(c, &cmd, &what)
}

/// redis-shield's bucket key: its full-again moment in model units (see
/// [`Gcra::per_us`]), from the value (`~0` or `~<remainder>/<ticks per ms>`,
/// that many ticks before the expiry) and the absolute expiry; None: no key.
fn ours_full_at(c: &mut redis::Connection, key: &str, g: Gcra) -> Option<i128> {
    // Both at once (MULTI): a key about to expire cannot go between them.
    let (value, expire): (Option<Vec<u8>>, i64) = redis::pipe()
        .atomic()
        .cmd("GET")
        .arg(key)
        .cmd("PEXPIRETIME")
        .arg(key)
        .query(c)
        .unwrap();
    let value = String::from_utf8(value?).unwrap();
    assert!(expire > 0, "{key} = {value:?} has no expiry");
    let rest = value
        .strip_prefix('~')
        .unwrap_or_else(|| panic!("{key} holds {value:?}"));
    let (remainder, per_ms): (i128, i128) = match rest.split_once('/') {
        Some((r, d)) => (r.parse().unwrap(), d.parse().unwrap()),
        None => (rest.parse().unwrap(), 1),
    };
    let ms = 1000 * g.per_us();
    assert_eq!(
        remainder * ms % per_ms,
        0,
        "{key} = {value:?}: ticks of another size than {}",
        g.args()
    );
    Some(i128::from(expire) * ms - remainder * ms / per_ms)
}

/// The native key's TAT in µs, read from `DUMP` (the RDB encoding: type 29,
/// then the TAT as an RDB length); None: no key.
fn native_tat(c: &mut redis::Connection, key: &str) -> Option<i128> {
    let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query(c).unwrap();
    let dump = dump?;
    assert_eq!(dump[0], 29, "{key} is not a GCRA key: {dump:?}");
    let be = |bytes: &[u8]| bytes.iter().fold(0i128, |acc, &b| acc << 8 | i128::from(b));
    Some(match dump[1] >> 6 {
        0 => i128::from(dump[1] & 0x3f),
        1 => i128::from(dump[1] & 0x3f) << 8 | i128::from(dump[2]),
        _ if dump[1] == 0x80 => be(&dump[2..6]),
        _ if dump[1] == 0x81 => be(&dump[2..10]),
        _ => panic!("{key}: unexpected encoding {dump:?}"),
    })
}

fn set_native_tat(c: &mut redis::Connection, key: &str, us: i128) {
    let _: () = redis::cmd("GCRASETVALUE")
        .arg(key)
        .arg(us.to_string())
        .query(c)
        .unwrap();
}

/// "Time passing" by `seconds` for redis-shield: the key expires (is full)
/// that much earlier; its value counts from the expiry, so this is exact.
fn shift_ours(c: &mut redis::Connection, key: &str, seconds: u64) {
    let (value, expire) = c.stored(key);
    if value.is_some() {
        let at = expire - 1000 * i64::try_from(seconds).unwrap();
        let _: () = redis::cmd("PEXPIREAT").arg(key).arg(at).query(c).unwrap();
    }
}

/// The same for the native key: its TAT moves `seconds` earlier.
fn shift_native(c: &mut redis::Connection, key: &str, seconds: u64) {
    if let Some(tat) = native_tat(c, key) {
        set_native_tat(c, key, tat - i128::from(seconds) * US_PER_S);
    }
}

// ---------------------------------------------------------------- models

/// `max_burst tokens_per_period period`, the period `units / 10^decimals` s.
#[derive(Clone, Copy, Debug)]
struct Gcra {
    burst: u64,
    tokens: u64,
    units: u64,
    decimals: u32,
}

impl Gcra {
    const fn new(burst: u64, tokens: u64, units: u64, decimals: u32) -> Gcra {
        Gcra {
            burst,
            tokens,
            units,
            decimals,
        }
    }
    fn period_text(&self) -> String {
        let scale = 10u64.pow(self.decimals);
        let (whole, frac) = (self.units / scale, self.units % scale);
        if self.decimals == 0 {
            whole.to_string()
        } else {
            let frac = format!("{frac:0width$}", width = self.decimals as usize);
            format!("{whole}.{}", frac.trim_end_matches('0'))
                .trim_end_matches('.')
                .to_string()
        }
    }
    fn args(&self) -> String {
        format!("{} {} {}", self.burst, self.tokens, self.period_text())
    }
    fn capacity(&self) -> i128 {
        i128::from(self.burst) + 1
    }
    /// The exact model counts time in units of 1/(tokens * 10^decimals) µs,
    /// in which the interval (period / tokens) is whole.
    fn per_us(&self) -> i128 {
        i128::from(self.tokens) * 10i128.pow(self.decimals)
    }
    fn second(&self) -> i128 {
        US_PER_S * self.per_us()
    }
    /// The exact interval, in units.
    fn interval(&self) -> i128 {
        i128::from(self.units) * US_PER_S
    }
    /// The native interval in µs: `(long long)(period * 1e6 / tokens + 0.5)`, at least 1.
    fn native_interval_us(&self) -> i128 {
        let period: f64 = self.period_text().parse().unwrap();
        let us = ((period * 1_000_000.0) / self.tokens as f64 + 0.5) as i64;
        i128::from(us.max(1))
    }
    /// How the native interval compares with the exact one.
    fn native_rounding(&self) -> std::cmp::Ordering {
        (self.native_interval_us() * self.per_us()).cmp(&self.interval())
    }
}

/// redis-shield's answer: exact arithmetic, on a bucket whose full-again
/// moment is `ttl` units after now (0: full). Returns the reply and the
/// full-again moment after the call.
fn exact(g: Gcra, ttl: i128, tokens: u64) -> (Reply, i128) {
    let t = g.interval();
    let dvt = t * g.capacity();
    let new = ttl + t * i128::from(tokens);
    let (limited, retry, after) = if new > dvt {
        let retry = if i128::from(tokens) <= g.capacity() {
            i64::try_from(ceil_div(new - dvt, g.second())).unwrap()
        } else {
            -1
        };
        (true, retry, ttl)
    } else {
        (false, -1, new)
    };
    let reply = [
        i64::from(limited),
        i64::try_from(g.capacity()).unwrap(),
        i64::try_from((dvt - after).div_euclid(t)).unwrap(),
        retry,
        i64::try_from(ceil_div(after, g.second())).unwrap(),
    ];
    (reply, after)
}

/// The native command's answer at `delta_ms` after the simulated now, on a
/// key whose TAT is `tat` µs after the simulated now (which is a whole ms);
/// returns the reply and the TAT after the call (µs after the simulated now).
fn native(g: Gcra, tat: i128, delta_ms: i128, tokens: u64) -> (Reply, i128) {
    let now = delta_ms * 1000;
    // The key expires at its TAT rounded down to the ms.
    let present = delta_ms <= tat.div_euclid(1000);
    let tat_now = if present { tat } else { now };
    let t = g.native_interval_us();
    let dvt = t * g.capacity();
    let increment = t * i128::from(tokens);
    let new = now.max(tat_now) + increment;
    let diff = now - (new - dvt);
    let (limited, retry, ttl, after) = if diff < 0 {
        let retry = if increment <= dvt {
            i64::try_from(ceil_div(-diff, US_PER_S)).unwrap()
        } else {
            -1
        };
        (true, retry, tat_now - now, tat)
    } else {
        (false, -1, new - now, new)
    };
    let next = dvt - ttl;
    let remaining = if next > -t { next / t } else { 0 };
    let reply = [
        i64::from(limited),
        i64::try_from(g.capacity()).unwrap(),
        i64::try_from(remaining).unwrap(),
        retry,
        i64::try_from(ceil_div(ttl, US_PER_S)).unwrap(),
    ];
    (reply, after)
}

const FIELDS: [&str; 5] = [
    "limited",
    "limit",
    "available",
    "retry_after",
    "full_burst_after",
];

/// Checks one call: redis-shield's reply against exact arithmetic (with the
/// bucket `exact_ttl` units from full), the native reply against the native
/// model at some whole ms in `0..=max_delta_ms` after the simulated now (its
/// TAT `native_tat` µs after it); each field where they differ must be
/// explained by the native interval's rounding, in its direction: rounded
/// down, the native command is the more permissive one, rounded up the
/// stricter one. Returns the native TAT after the call.
#[allow(clippy::too_many_arguments)]
fn compare(
    tally: &mut Tally,
    what: &str,
    g: Gcra,
    tokens: u64,
    ours: Reply,
    exact_ttl: i128,
    theirs: Reply,
    native_tat: i128,
    max_delta_ms: i128,
) -> i128 {
    let (expected, _) = exact(g, exact_ttl, tokens);
    check_exact(tally, what, ours, expected);
    let (delta, native_after) = (0..=max_delta_ms)
        .find_map(|d| {
            let (reply, after) = native(g, native_tat, d, tokens);
            (reply == theirs).then_some((d, after))
        })
        .unwrap_or_else(|| {
            panic!(
                "{what}: the native command answered {theirs:?}, its model {:?} (at +0 ms; \
                 TAT {native_tat} µs, interval {} µs)",
                native(g, native_tat, 0, tokens).0,
                g.native_interval_us()
            )
        });
    let rounding = g.native_rounding();
    let pair = (ours, theirs);
    note_differences(
        tally,
        what,
        &FIELDS,
        pair,
        "native",
        |i, field, ours_stricter| {
            let cause = match (rounding, ours_stricter) {
                (std::cmp::Ordering::Less, true) => {
                    "the native interval is rounded down to the µs (more permissive than exact)"
                }
                (std::cmp::Ordering::Greater, false) => {
                    "the native interval is rounded up to the µs (stricter than exact)"
                }
                _ => panic!(
                    "{what}: {field} {} (redis-shield) vs {} (native) is not explained: the \
                     native interval {} µs is {rounding:?} than the exact one",
                    ours[i],
                    theirs[i],
                    g.native_interval_us()
                ),
            };
            let clock = if delta > 0 {
                " (native clock read a later ms)"
            } else {
                ""
            };
            format!("{field}: {cause}{clock}")
        },
    );
    native_after
}

// ------------------------------------------- 1. replies and storage (ours alone)

#[test]
fn documented_example_and_the_stored_bucket() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let g = Gcra::new(29, 30, 60, 0);
    assert_eq!(gcra(&mut c, "g", g, Some(13)), [0, 30, 17, -1, 26]);
    assert_eq!(gcra(&mut c, "g", g, Some(13)), [0, 30, 4, -1, 52]);
    // 9 tokens short at half a token per second.
    assert_eq!(gcra(&mut c, "g", g, Some(13)), [1, 30, 4, 18, 52]);
    // The same bucket as SHIELD.absorb g 30 60: stored the same way.
    let (value, expire) = c.stored("g");
    assert_eq!(value.as_deref(), Some(&b"~0"[..]));
    assert!(expire > 0);
    let ty: String = redis::cmd("TYPE").arg("g").query(&mut c).unwrap();
    assert_eq!(ty, "string");
    assert_eq!(c.absorb("g", 30, 60, Some(4)), 0);
    assert_eq!(gcra(&mut c, "g", g, None)[..3], [1, 30, 0]);

    // A decimal period: 3 tokens per 2.5 s, capacity 2.
    let fine = Gcra::new(1, 3, 25, 1);
    assert_eq!(gcra(&mut c, "fine", fine, Some(2)), [0, 2, 0, -1, 2]);
    assert_eq!(gcra(&mut c, "fine", fine, None), [1, 2, 0, 1, 2]);
    let (value, _) = c.stored("fine");
    // Full again 5/3 s = 1666.66... ms after a whole ms: 1/3 ms before the
    // expiry, a remainder in ticks of 1/30 ms.
    assert_eq!(value.as_deref(), Some(&b"~10/30"[..]));
}

#[test]
fn native_error_texts_and_arity() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    for (args, expected) in error_cases() {
        assert_eq!(c.command_err("GCRA", &args[..]), expected, "GCRA {args:?}");
    }
    for args in [
        &["g", "1", "1"][..],
        &["g", "1", "1", "1", "TOKENS", "1", "extra"],
    ] {
        let err = c.command_err("GCRA", args);
        assert!(
            err.starts_with("ERR wrong number of arguments"),
            "GCRA {args:?}: {err}"
        );
    }
    // This implementation's own limit: the period is exact to the µs.
    let err = c.command_err("GCRA", &["g", "1", "1", "0.0000001"][..]);
    assert!(err.starts_with("ERR") && err.contains("6 decimal"), "{err}");
    let exists: i64 = redis::cmd("EXISTS").arg("g").query(&mut c).unwrap();
    assert_eq!(exists, 0, "an error writes nothing");
}

/// Arguments and the native command's error for them.
fn error_cases() -> Vec<(Vec<&'static str>, &'static str)> {
    const POSITIVE: &str = "ERR value is out of range, must be positive";
    const INTEGER: &str = "ERR value is not an integer or out of range";
    const FROM_ONE: &str =
        "ERR value is out of range, value must between 1 and 9223372036854775807";
    const PERIOD: &str = "ERR period must be > 0 and < 1e12";
    vec![
        (vec!["g", "x", "1", "1"], POSITIVE),
        (vec!["g", "-1", "1", "1"], POSITIVE),
        (vec!["g", "1", "x", "1"], INTEGER),
        (vec!["g", "1", "0", "1"], FROM_ONE),
        (vec!["g", "1", "-3", "1"], FROM_ONE),
        (vec!["g", "1", "1", "x"], "ERR value is not a valid float"),
        (vec!["g", "1", "1", "0"], PERIOD),
        (vec!["g", "1", "1", "-5"], PERIOD),
        (vec!["g", "1", "1", "1e12"], PERIOD),
        (vec!["g", "1", "1", "1", "COUNT", "1"], "ERR syntax error"),
        (
            vec!["g", "1", "1", "1", "TOKENS"],
            "ERR Missing TOKENS value",
        ),
        (
            vec!["g", "1", "1", "1", "tokens"],
            "ERR Missing TOKENS value",
        ),
        (vec!["g", "1", "1", "1", "TOKENS", "0"], FROM_ONE),
        (vec!["g", "1", "1", "1", "TOKENS", "01"], INTEGER),
        (vec!["g", "1", "1", "1", "TOKENS", "x"], INTEGER),
    ]
}

#[test]
fn a_bad_stored_value_is_an_error_and_the_server_stays_up() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let _: () = redis::cmd("SET")
        .arg("g")
        .arg("hello")
        .query(&mut c)
        .unwrap();
    let err = c.command_err("GCRA", &["g", "1", "1", "1"][..]);
    assert_eq!(
        err,
        "ERR the key holds a string that is not a redis-shield bucket"
    );
    let _: () = redis::cmd("RPUSH").arg("l").arg("x").query(&mut c).unwrap();
    let err = c.command_err("GCRA", &["l", "1", "1", "1"][..]);
    assert!(err.starts_with("WRONGTYPE"), "{err}");
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn a_replica_without_the_module_holds_the_same_bytes() {
    let pair = Pair::replica_without_module();
    let mut m = pair.master.conn();
    let calls = [
        ("a", Gcra::new(29, 30, 60, 0), Some(13)),
        ("half", Gcra::new(4, 3, 5, 1), Some(2)),
        ("quarter", Gcra::new(9, 7, 225, 2), None),
        ("quarter", Gcra::new(9, 7, 225, 2), Some(3)),
        ("micro", Gcra::new(1000, 3, 1, 6), Some(7)),
    ];
    for (key, g, t) in calls {
        gcra(&mut m, key, g, t);
    }
    pair.assert_same_bytes(&mut m, &["a", "half", "quarter"]);
}

// ------------------------------------------- 4. differential against the native GCRA

/// redis-shield on the server under test, the native command on the anchor.
fn side_by_side() -> SideBySide {
    SideBySide::start(native_gcra_options())
}

#[test]
fn error_texts_match_the_native_command() {
    let mut both = side_by_side();
    for (args, expected) in error_cases() {
        assert_eq!(
            both.theirs.command_err("GCRA", &args[..]),
            expected,
            "native GCRA {args:?}"
        );
        assert_eq!(
            both.ours.command_err("GCRA", &args[..]),
            expected,
            "GCRA {args:?}"
        );
    }
    let args = &["g", "1", "1", "1", "TOKENS", "1", "extra"][..];
    let (ours, theirs) = (
        both.ours.command_err("GCRA", args),
        both.theirs.command_err("GCRA", args),
    );
    assert!(
        theirs.starts_with("ERR wrong number of arguments"),
        "{theirs}"
    );
    assert!(ours.starts_with("ERR wrong number of arguments"), "{ours}");
}

/// Loaded into a server that has GCRA, the module leaves it to the server
/// (the key is the native type) and still serves CL.THROTTLE.
#[test]
fn the_module_steps_aside_where_the_server_has_gcra() {
    let s = Server::start(
        native_gcra_options()
            .arg("--loadmodule")
            .arg(module_path().to_str().unwrap()),
    );
    let mut c = s.conn();
    assert_eq!(
        gcra(&mut c, "g", Gcra::new(29, 30, 60, 0), Some(13)),
        [0, 30, 17, -1, 26]
    );
    let ty: String = redis::cmd("TYPE").arg("g").query(&mut c).unwrap();
    assert_eq!(ty, "gcra");
    let v: Vec<i64> = redis::cmd("CL.THROTTLE")
        .arg(&["c", "15", "30", "60"])
        .query(&mut c)
        .unwrap();
    assert_eq!(v, [0, 16, 15, -1, 2]);
}

/// One call on a fresh key at any rate and any decimal period (down to the
/// µs): the reply does not depend on the clock (the bucket is full), so the
/// two can be compared where the milliseconds between the calls would
/// otherwise matter.
#[test]
fn differential_fresh_keys_at_any_rate() {
    let mut both = side_by_side();
    let mut rng = Rng::new();
    let mut tally = Tally::default();
    for i in 0..400 {
        let decimals = rng.below(7) as u32;
        let scale = 10u64.pow(decimals);
        // A period from 1 µs to 10^5 s.
        let units = log_uniform(&mut rng, (scale / 1_000_000).max(1), 100_000 * scale);
        let tokens = log_uniform(&mut rng, 1, 10_000_000);
        let probe = Gcra::new(0, tokens, units, decimals);
        // At most 10^6 s for the whole bucket.
        let max_burst = (1_000_000 * probe.second() / probe.interval()).min(2_000_000);
        let burst = log_uniform(&mut rng, 1, max_burst.max(1) as u64 + 1) - 1;
        let g = Gcra::new(burst, tokens, units, decimals);
        let cap = burst + 1;
        let count = match rng.below(5) {
            0 => 1,
            1 => cap,
            2 => cap + 1 + rng.below(3),
            _ => 1 + rng.below(cap),
        };
        let key = format!("fresh{i}");
        let ours = gcra(&mut both.ours, &key, g, Some(count));
        let theirs = gcra(&mut both.theirs, &key, g, Some(count));
        let what = format!("GCRA {key} {} TOKENS {count} (fresh key)", g.args());
        compare(&mut tally, &what, g, count, ours, 0, theirs, 0, 0);
        // Ours: full again at the call's whole ms plus the exact time of the tokens.
        let full_at = ours_full_at(&mut both.ours, &key, g);
        let drained = (ours[0] == 0).then(|| g.interval() * i128::from(count));
        let units = (1000 * g.per_us(), g.second());
        check_fresh_key(&what, full_at, drained, units, "a denial");
    }
    tally.print("GCRA vs native, fresh keys");
}

/// Runs `steps` on a fresh key of both and checks every call (see
/// `compare`) and every stored state.
///
/// Time is simulated: before a call, both states move back by the same whole
/// seconds (ours by its expiry, `PEXPIREAT`; the native TAT, read with
/// `DUMP`, by `GCRASETVALUE`). The positions that matter are multiples of
/// 1/(tokens * denominator of the period) s from the bucket's last full
/// moment (at least 83 ms here), so the real time the calls take (kept under
/// half of that) changes no exact answer; the native command's positions are
/// off by its interval's rounding (µs), so its model is evaluated at each ms
/// its clock can have read. At a full moment both start from their own ms:
/// the native TAT is then replaced by the one it would have computed at
/// redis-shield's ms.
fn run_sequence(
    both: &mut SideBySide,
    key: &str,
    g: Gcra,
    gap: Duration,
    steps: &[Step],
) -> Result<Tally, TooSlow> {
    let mut tally = Tally::default();
    let budget = gap / 2;
    let ms = 1000 * g.per_us();
    // Exact: full-again moment minus the simulated now, in units; native:
    // TAT minus the simulated now, in µs.
    let (mut ours_ttl, mut native_ttl) = (0i128, 0i128);
    // The last full moment: redis-shield's ms, and when it was.
    let mut origin: Option<(i128, Instant)> = None;
    for (n, &(delta, count)) in steps.iter().enumerate() {
        if delta > 0 {
            shift_ours(&mut both.ours, key, delta);
            shift_native(&mut both.theirs, key, delta);
            ours_ttl -= i128::from(delta) * g.second();
            native_ttl -= i128::from(delta) * US_PER_S;
        }
        let exact_ttl = ours_ttl.max(0);
        let (_, exact_after) = exact(g, exact_ttl, count);
        let called = Instant::now();
        let ours = gcra(&mut both.ours, key, g, Some(count));
        let theirs = gcra(&mut both.theirs, key, g, Some(count));
        // The ms the native clock can have read: from the last full moment to now.
        let since = origin.map_or(Duration::ZERO, |(_, at)| at.elapsed());
        let max_delta_ms = i128::try_from(since.as_millis()).unwrap() + 1;
        let full_moment = exact_ttl == 0 && exact_after > 0;
        let mut new_origin = None;
        if full_moment {
            // Ours is full again at its ms plus the tokens' time; the native
            // TAT becomes the one it would have computed at that ms.
            let Some(full_at) = ours_full_at(&mut both.ours, key, g) else {
                return Err(TooSlow(called.elapsed()));
            };
            let at = full_at - exact_after;
            let (_, native_after) = native(g, 0, 0, count);
            set_native_tat(
                &mut both.theirs,
                key,
                at.div_euclid(ms) * 1000 + native_after,
            );
            new_origin = Some((at, called));
        }
        let ours_stored = ours_full_at(&mut both.ours, key, g);
        let native_stored = native_tat(&mut both.theirs, key);
        check_timing(exact_ttl + exact_after > 0, new_origin.or(origin), budget)?;
        let what = format!(
            "GCRA {key} {} TOKENS {count} (step {n}, after {delta} s; steps {steps:?})",
            g.args()
        );
        let native_after = compare(
            &mut tally,
            &what,
            g,
            count,
            ours,
            exact_ttl,
            theirs,
            native_ttl,
            max_delta_ms,
        );
        if let Some((at, called)) = new_origin {
            assert_eq!(at % ms, 0, "{what}: full again at {}", at + exact_after);
            origin = Some((at / ms, called));
            (ours_ttl, native_ttl) = (exact_after, native(g, 0, 0, count).1);
        } else {
            (ours_ttl, native_ttl) = (exact_after, native_after);
        }
        // The stored states: each what its model says.
        let at_ms = origin.map_or(0, |(at, _)| at);
        let (ours_expected, native_expected) = (at_ms * ms + ours_ttl, at_ms * 1000 + native_ttl);
        if ours_ttl > 0 {
            assert_eq!(ours_stored, Some(ours_expected), "{what}: our bucket");
            assert_eq!(
                native_stored,
                Some(native_expected),
                "{what}: the native TAT"
            );
        } else {
            // Full: no key, or one at the simulated now that has not expired yet.
            assert!(
                ours_stored.is_none_or(|s| s == ours_expected),
                "{what}: {ours_stored:?}"
            );
            assert!(
                native_stored.is_none_or(|s| s == native_expected),
                "{what}: {native_stored:?}"
            );
        }
    }
    Ok(tally)
}

/// Random sequences at slow rates with decimal periods (0.25, 0.5, 2.25,
/// 12.5 s, ...), exact native intervals and intervals the native command
/// rounds up or down, with quantities above the limit and time passing by
/// whole seconds.
#[test]
fn differential_sequences_with_time_passing() {
    let mut both = side_by_side();
    let mut rng = Rng::new();
    let mut tally = Tally::default();
    let mut too_slow = Vec::new();
    // (units, decimals, denominator of the reduced fraction)
    let periods = [
        (1, 0, 1),
        (2, 0, 1),
        (3, 0, 1),
        (7, 0, 1),
        (10, 0, 1),
        (60, 0, 1),
        (5, 1, 2),
        (15, 1, 2),
        (125, 1, 2),
        (225, 2, 4),
        (25, 2, 4),
        (75, 2, 4),
    ];
    let mut rounded = [0; 3];
    for s in 0..80 {
        let (units, decimals, den) = periods[rng.below(periods.len() as u64) as usize];
        let tokens = 1 + rng.below(12 / den);
        let burst = random_burst(&mut rng);
        let g = Gcra::new(burst, tokens, units, decimals);
        rounded[(g.native_rounding() as i8 + 1) as usize] += 1;
        let gap = Duration::from_secs(1) / u32::try_from(tokens * den).unwrap();
        let cap = burst + 1;
        let full_s = ceil_div(g.interval() * g.capacity(), g.second()) as u64;
        let steps = random_steps(&mut rng, full_s, cap, false);
        run_until_judged(s, &mut tally, &mut too_slow, |key| {
            run_sequence(&mut both, key, g, gap, &steps)
        });
    }
    assert!(
        rounded[0] > 0 && rounded[2] > 0,
        "native intervals rounded down/exact/up: {rounded:?}"
    );
    print_sequences(
        &tally,
        &format!(
            "GCRA vs native, 80 sequences (native interval rounded down/exact/up: {rounded:?})"
        ),
        &too_slow,
    );
}
