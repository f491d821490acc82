//! The single-node workload table (`SPECS`): what each workload sends, how
//! its keys are chosen, set up and checked; and the control helpers the
//! sections share.

use std::net::SocketAddr;

use shield_testkit::Server;

use crate::loadgen::{self, push_cmd, DenyCheck, Plan, RunResult, Workload};
use shield_testkit::Rng;

pub use crate::loadgen::write_digits;

pub const LUA_BUCKET: &str = include_str!("token_bucket.lua");

/// Distinct keys of the random-key workloads (`k:000000` .. `k:099999`).
pub const KEYS: u64 = 100_000;
pub const KEY_DIGITS: usize = 6;

pub fn addr_of(s: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], s.port()))
}

pub fn command_exists(c: &mut redis::Connection, name: &str) -> bool {
    let v: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query(c)
        .unwrap_or(redis::Value::Nil);
    match v {
        redis::Value::Array(items) => items.first().is_some_and(|i| *i != redis::Value::Nil),
        _ => false,
    }
}

pub fn flushall(addr: SocketAddr) -> Result<(), String> {
    let (errors, first) = loadgen::bulk(addr, 1, 1, |_, out| {
        push_cmd(out, &[b"FLUSHALL"]);
        1
    })?;
    if errors > 0 {
        return Err(format!("FLUSHALL: {}", first.unwrap_or_default()));
    }
    Ok(())
}

pub const KEY: &str = "$KEY";
pub const SHA: &str = "$SHA";
pub const VAL16: &str = "1234567890123456";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Keys {
    /// One key for every request.
    Fixed(&'static str),
    /// `k:<6 digits>`, uniform over `KEYS` keys per request.
    Random,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Setup {
    None,
    /// Run one request before measuring (drains a capacity-1 bucket).
    Once,
    /// Run this command first.
    Cmd(&'static [&'static str]),
    /// Run one request on every key of the random key space first (steady state).
    EachKey,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// No error, no denial.
    Admitted,
    /// Every reply a denial.
    Denied,
    /// No error.
    Ok,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    Native,
    Shield,
    /// The Functions library `functions/shield.lua` (`FCALL`), beside the module.
    Library,
    Lua,
    Window,
    /// Our `CL.THROTTLE`.
    Throttle,
    /// redis-cell's `CL.THROTTLE`.
    Cell,
    /// Our `GCRA`.
    Gcra,
    /// The server's own `GCRA`.
    NativeGcra,
}

/// The server a workload runs on (see `single::Servers`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Srv {
    /// `SHIELD_SERVER_BIN` with this module: every figure but those below.
    Main,
    /// Redis 7.0 with redis-cell 0.5.0 and without this module (the two
    /// cannot share a server: both serve `CL.THROTTLE`).
    Cell,
    /// The Redis build with the native `GCRA`, with this module loaded (its
    /// `GCRA` steps aside there; `SHIELD.absorb` runs beside the native one).
    NativeGcra,
}

impl Srv {
    pub const ALL: [Srv; 3] = [Srv::Main, Srv::Cell, Srv::NativeGcra];

    /// The `INCR hot` figure of this server (the `× INCR` base of its workloads).
    pub fn incr_id(self) -> &'static str {
        match self {
            Srv::Main => "incr",
            Srv::Cell => "cell_incr",
            Srv::NativeGcra => "ng_incr",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Srv::Main => "main",
            Srv::Cell => "redis-cell",
            Srv::NativeGcra => "native GCRA",
        }
    }
}

pub struct Spec {
    pub id: &'static str,
    pub label: &'static str,
    pub family: Family,
    pub server: Srv,
    /// Commands of one request; `$KEY` is the key, `$SHA` the Lua script's SHA1.
    pub cmds: &'static [&'static [&'static str]],
    pub keys: Keys,
    pub setup: Setup,
    pub expect: Expect,
    pub deny: DenyCheck,
    /// Skipped (reported "not available") unless `COMMAND INFO` knows this command.
    pub requires: Option<&'static str>,
}

impl Spec {
    /// Measured only by the `compat` section: `CL.THROTTLE`, `GCRA`, and
    /// everything on the reference servers.
    pub fn compat_only(&self) -> bool {
        self.server != Srv::Main || matches!(self.family, Family::Throttle | Family::Gcra)
    }

    /// Whether a run of these sections measures this workload: the main
    /// server's `INCR` and `SHIELD.absorb` figures are in both (the
    /// compatibility ratios divide by them).
    pub fn wanted(&self, single: bool, compat: bool) -> bool {
        if self.compat_only() {
            compat
        } else {
            single || (compat && COMPAT_BASE.contains(&self.id))
        }
    }
}

/// The main server's figures that the compatibility ratios use.
pub const COMPAT_BASE: &[&str] = &["incr", "shield_hot", "shield_rand", "shield_denied"];

pub const HOT: Keys = Keys::Fixed("hot");
pub const DRAINED: Keys = Keys::Fixed("drained");

/// Hot admitted bucket: capacity 10^12, period 10^10 s: a token is 10 ms of
/// refill, so it never runs dry, and the key stays live like `SET ... PX`.
pub const SHIELD_HOT: &[&str] = &["SHIELD.absorb", KEY, "1000000000000", "10000000000"];
/// The hot bucket with 10^6 tokens taken (10^4 s of refill): a live key for `SHIELD.inspect`.
pub const SHIELD_HOT_LIVE: &[&str] = &[
    "SHIELD.absorb",
    KEY,
    "1000000000000",
    "10000000000",
    "1000000",
];
/// Random-key bucket: one token = 60 s, capacity 10^6 (the key lives >= 60 s).
pub const SHIELD_RAND: &[&str] = &["SHIELD.absorb", KEY, "1000000", "60000000"];
/// Drained bucket: capacity 1, period 10^9 s.
pub const SHIELD_DENIED: &[&str] = &["SHIELD.absorb", KEY, "1", "1000000000"];

// The Functions library (`functions/shield.lua`) on the main server, beside
// the module. Its range is capacity × period ≤ 8·10^12, which the SHIELD
// buckets above exceed (10^22 and 6·10^13), so it runs the in-range buckets of
// the same shape: a hot bucket that never runs dry during a run, a token of
// 60 s over the random keys (each key lives >= 60 s), the same drained bucket.
// Every one stores `~0` (no remainder), like the SHIELD buckets; the module's
// cost does not depend on the numbers (same integer path).

/// Library, hot: capacity 8·10^6, period 10^6 s (a token is 125 ms of refill;
/// 8·10^6 calls before it runs dry, more than a full run sends to it).
pub const LIB_HOT: &[&str] = &["FCALL", "shield_absorb", "1", KEY, "8000000", "1000000"];
/// Library, random keys: capacity 10^5, period 6·10^6 s (a token is 60 s).
pub const LIB_RAND: &[&str] = &["FCALL", "shield_absorb", "1", KEY, "100000", "6000000"];
/// Library, drained: the bucket of `SHIELD_DENIED`.
pub const LIB_DENIED: &[&str] = &["FCALL", "shield_absorb", "1", KEY, "1", "1000000000"];

// The compatibility commands. `GCRA k C-1 C P` is the bucket of
// `SHIELD.absorb k C P` (C + 1 - 1 tokens of burst, C per P seconds), so the
// GCRA workloads use exactly the SHIELD buckets above. `CL.THROTTLE`'s hot
// bucket is 10^9 tokens at the same 10 ms per token: redis-cell 0.5.0 answers
// a burst of 10^12 at 10 ms per token with `1 ... -1` (limited, never).

/// `CL.THROTTLE` hot: 10^9 tokens, 10^9 per 10^7 s (a token is 10 ms of refill).
pub const CL_HOT: &[&str] = &["CL.THROTTLE", KEY, "999999999", "1000000000", "10000000"];
/// `CL.THROTTLE` random keys: the bucket of `SHIELD_RAND` (a token is 60 s).
pub const CL_RAND: &[&str] = &["CL.THROTTLE", KEY, "999999", "1000000", "60000000"];
/// `CL.THROTTLE` drained: the bucket of `SHIELD_DENIED` (capacity 1, 10^9 s).
pub const CL_DENIED: &[&str] = &["CL.THROTTLE", KEY, "0", "1", "1000000000"];
/// `GCRA` hot: the bucket of `SHIELD_HOT`.
pub const GCRA_HOT: &[&str] = &["GCRA", KEY, "999999999999", "1000000000000", "10000000000"];
/// `GCRA` random keys: the bucket of `SHIELD_RAND`.
pub const GCRA_RAND: &[&str] = &["GCRA", KEY, "999999", "1000000", "60000000"];
/// `GCRA` drained: the bucket of `SHIELD_DENIED`.
pub const GCRA_DENIED: &[&str] = &["GCRA", KEY, "0", "1", "1000000000"];

use Family as F;
use Srv::{Cell as CELL, Main as MAIN, NativeGcra as NG};

#[rustfmt::skip]
pub const SPECS: &[Spec] = &[
    Spec { id: "incr", label: "INCR hot (floor)", family: F::Native, server: MAIN, cmds: &[&["INCR", KEY]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "get", label: "GET of a string key", family: F::Native, server: MAIN, cmds: &[&["GET", KEY]], keys: Keys::Fixed("str"), setup: Setup::Cmd(&["SET", KEY, VAL16]), expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "set_hot", label: "SET hot <16-digit int> PX 60000", family: F::Native, server: MAIN, cmds: &[&["SET", KEY, VAL16, "PX", "60000"]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "set_rand", label: "SET k:<rand> <16-digit int> PX 60000", family: F::Native, server: MAIN, cmds: &[&["SET", KEY, VAL16, "PX", "60000"]], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "shield_hot", label: "SHIELD.absorb, one hot key (admitted)", family: F::Shield, server: MAIN, cmds: &[SHIELD_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "shield_rand", label: "SHIELD.absorb, 100k random keys (admitted)", family: F::Shield, server: MAIN, cmds: &[SHIELD_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "shield_denied", label: "SHIELD.absorb, drained bucket (denied)", family: F::Shield, server: MAIN, cmds: &[SHIELD_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "shield_inspect", label: "SHIELD.inspect, one hot key", family: F::Shield, server: MAIN, cmds: &[&["SHIELD.inspect", KEY, "1000000000000", "10000000000"]], keys: HOT, setup: Setup::Cmd(SHIELD_HOT_LIVE), expect: Expect::Ok, deny: DenyCheck::None, requires: Some("shield.inspect") },
    Spec { id: "lib_hot", label: "shield library (FCALL shield_absorb), hot key (admitted)", family: F::Library, server: MAIN, cmds: &[LIB_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("fcall") },
    Spec { id: "lib_rand", label: "shield library (FCALL shield_absorb), 100k random keys (admitted)", family: F::Library, server: MAIN, cmds: &[LIB_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("fcall") },
    Spec { id: "lib_denied", label: "shield library (FCALL shield_absorb), drained (denied)", family: F::Library, server: MAIN, cmds: &[LIB_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Shield, requires: Some("fcall") },
    Spec { id: "lua_hot", label: "Lua token bucket (EVALSHA), hot key", family: F::Lua, server: MAIN, cmds: &[&["EVALSHA", SHA, "1", KEY, "1000000000000", "10000000000"]], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: None },
    Spec { id: "lua_rand", label: "Lua token bucket (EVALSHA), 100k random keys", family: F::Lua, server: MAIN, cmds: &[&["EVALSHA", SHA, "1", KEY, "1000000", "60000000"]], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: None },
    Spec { id: "lua_denied", label: "Lua token bucket (EVALSHA), drained (denied)", family: F::Lua, server: MAIN, cmds: &[&["EVALSHA", SHA, "1", KEY, "1", "1000000000"]], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Shield, requires: None },
    Spec { id: "window_hot", label: "fixed window INCRBY+PEXPIRE, hot key", family: F::Window, server: MAIN, cmds: &[&["INCRBY", KEY, "1"], &["PEXPIRE", KEY, "60000"]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "window_rand", label: "fixed window INCRBY+PEXPIRE, 100k random keys", family: F::Window, server: MAIN, cmds: &[&["INCRBY", KEY, "1"], &["PEXPIRE", KEY, "60000"]], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    // Compatibility commands (section `compat`).
    Spec { id: "cl_hot", label: "CL.THROTTLE (ours), hot key (admitted)", family: F::Throttle, server: MAIN, cmds: &[CL_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("cl.throttle") },
    Spec { id: "cl_rand", label: "CL.THROTTLE (ours), 100k random keys (admitted)", family: F::Throttle, server: MAIN, cmds: &[CL_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("cl.throttle") },
    Spec { id: "cl_denied", label: "CL.THROTTLE (ours), drained (denied)", family: F::Throttle, server: MAIN, cmds: &[CL_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Throttle, requires: Some("cl.throttle") },
    Spec { id: "gcra_hot", label: "GCRA (ours), hot key (admitted)", family: F::Gcra, server: MAIN, cmds: &[GCRA_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("gcra") },
    Spec { id: "gcra_rand", label: "GCRA (ours), 100k random keys (admitted)", family: F::Gcra, server: MAIN, cmds: &[GCRA_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("gcra") },
    Spec { id: "gcra_denied", label: "GCRA (ours), drained (denied)", family: F::Gcra, server: MAIN, cmds: &[GCRA_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Throttle, requires: Some("gcra") },
    Spec { id: "cell_incr", label: "INCR hot (floor)", family: F::Native, server: CELL, cmds: &[&["INCR", KEY]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "cell_hot", label: "CL.THROTTLE (redis-cell), hot key (admitted)", family: F::Cell, server: CELL, cmds: &[CL_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("cl.throttle") },
    Spec { id: "cell_rand", label: "CL.THROTTLE (redis-cell), 100k random keys (admitted)", family: F::Cell, server: CELL, cmds: &[CL_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("cl.throttle") },
    Spec { id: "cell_denied", label: "CL.THROTTLE (redis-cell), drained (denied)", family: F::Cell, server: CELL, cmds: &[CL_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Throttle, requires: Some("cl.throttle") },
    Spec { id: "ng_incr", label: "INCR hot (floor)", family: F::Native, server: NG, cmds: &[&["INCR", KEY]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "ng_gcra_hot", label: "GCRA (native), hot key (admitted)", family: F::NativeGcra, server: NG, cmds: &[GCRA_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("gcra") },
    Spec { id: "ng_gcra_rand", label: "GCRA (native), 100k random keys (admitted)", family: F::NativeGcra, server: NG, cmds: &[GCRA_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Throttle, requires: Some("gcra") },
    Spec { id: "ng_gcra_denied", label: "GCRA (native), drained (denied)", family: F::NativeGcra, server: NG, cmds: &[GCRA_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Throttle, requires: Some("gcra") },
    Spec { id: "ng_shield_hot", label: "SHIELD.absorb, one hot key (admitted)", family: F::Shield, server: NG, cmds: &[SHIELD_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "ng_shield_rand", label: "SHIELD.absorb, 100k random keys (admitted)", family: F::Shield, server: NG, cmds: &[SHIELD_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "ng_shield_denied", label: "SHIELD.absorb, drained bucket (denied)", family: F::Shield, server: NG, cmds: &[SHIELD_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
];

/// Single-node figures that are cross-checked with `redis-benchmark`.
pub const CROSS_CHECK: &[&str] = &["incr", "set_hot", "shield_hot"];

pub fn spec(id: &str) -> &'static Spec {
    SPECS.iter().find(|s| s.id == id).expect("known spec id")
}

pub fn key_bytes(keys: Keys, n: u64) -> Vec<u8> {
    match keys {
        Keys::Fixed(k) => k.as_bytes().to_vec(),
        Keys::Random => {
            let mut k = b"k:000000".to_vec();
            write_digits(&mut k[2..], n);
            k
        }
    }
}

/// Serializes one request (all its commands) for key `key`; returns the
/// offsets of the key's digits when the key is random.
pub fn push_request(out: &mut Vec<u8>, s: &Spec, key: &[u8], sha: &str, digits: &mut Vec<usize>) {
    for cmd in s.cmds {
        out.push(b'*');
        loadgen::push_uint(out, cmd.len() as u64);
        out.extend_from_slice(b"\r\n");
        for a in cmd.iter() {
            let bytes: &[u8] = match *a {
                KEY => key,
                SHA => sha.as_bytes(),
                other => other.as_bytes(),
            };
            out.push(b'$');
            loadgen::push_uint(out, bytes.len() as u64);
            out.extend_from_slice(b"\r\n");
            if *a == KEY && s.keys == Keys::Random {
                digits.push(out.len() + 2);
            }
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A pipeline of `depth` requests of one spec, pre-serialized once; random
/// keys are patched in place for each plan.
pub struct SingleWorkload {
    pub template: Vec<u8>,
    /// Digit offsets of each request's key(s).
    pub digits: Vec<Vec<usize>>,
    pub depth: usize,
    pub per_request: usize,
}

impl SingleWorkload {
    pub fn new(s: &Spec, depth: usize, sha: &str) -> SingleWorkload {
        let mut template = Vec::new();
        let mut digits = Vec::new();
        for _ in 0..depth {
            let mut d = Vec::new();
            push_request(&mut template, s, &key_bytes(s.keys, 0), sha, &mut d);
            digits.push(d);
        }
        SingleWorkload {
            template,
            digits,
            depth,
            per_request: s.cmds.len(),
        }
    }
}

impl Workload for SingleWorkload {
    fn next_plan(&mut self, _client: usize, rng: &mut Rng, plan: &mut Plan) {
        plan.stage();
        let send = plan.send(0);
        send.buf.extend_from_slice(&self.template);
        send.replies = self.depth * self.per_request;
        for d in &self.digits {
            if d.is_empty() {
                continue;
            }
            let n = rng.below(KEYS);
            for &off in d {
                write_digits(&mut send.buf[off..off + KEY_DIGITS], n);
            }
        }
        plan.requests = self.depth;
        plan.replies_per_request = Some(self.per_request);
    }
}

/// Checks a run's replies against the spec's expectation; `Err` says why the figure is invalid.
pub fn check_run(expect: Expect, r: &RunResult) -> Result<(), String> {
    if r.errors > 0 {
        return Err(format!(
            "{} error replies, first: {}",
            r.errors,
            r.first_error.clone().unwrap_or_default()
        ));
    }
    match expect {
        Expect::Admitted if r.denied > 0 => Err(format!("{} of {} denied", r.denied, r.replies)),
        Expect::Denied if r.denied != r.replies => {
            Err(format!("only {} of {} denied", r.denied, r.replies))
        }
        _ => Ok(()),
    }
}

pub fn setup_spec(addr: SocketAddr, s: &Spec, sha: &str) -> Result<(), String> {
    flushall(addr)?;
    let (errors, first) = match s.setup {
        Setup::None => (0, None),
        Setup::Once => loadgen::bulk(addr, 1, 1, |_, out| {
            push_request(out, s, &key_bytes(s.keys, 0), sha, &mut Vec::new());
            s.cmds.len()
        })?,
        Setup::Cmd(cmd) => loadgen::bulk(addr, 1, 1, |_, out| {
            let key = key_bytes(s.keys, 0);
            let args: Vec<&[u8]> = cmd
                .iter()
                .map(|a| if *a == KEY { &key[..] } else { a.as_bytes() })
                .collect();
            push_cmd(out, &args);
            1
        })?,
        Setup::EachKey => loadgen::bulk(addr, KEYS, 1000, |i, out| {
            push_request(out, s, &key_bytes(s.keys, i), sha, &mut Vec::new());
            s.cmds.len()
        })?,
    };
    if errors > 0 {
        return Err(format!(
            "setup of {}: {errors} errors, first: {}",
            s.id,
            first.unwrap_or_default()
        ));
    }
    Ok(())
}
