//! Side-by-side benchmark of `SHIELD.absorb` against what users would
//! otherwise run (see BENCHMARKS.md). Starts its own servers with the freshly
//! built module, pins server and load generator to separate cores, and
//! writes `bench-results/latest.md` and `bench-results/ratios.png`.
//!
//! ```sh
//! cargo bench --bench shield_bench                 # full run
//! SHIELD_BENCH_QUICK=1 cargo bench --bench shield_bench   # smoke run
//! ```
//!
//! Run without `--bench` (as `cargo test --benches` does) it only runs its
//! self-checks (RESP parser, histogram, key slots, PNG encoder), no servers.

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "shield_bench/chart.rs"]
mod chart;
#[path = "shield_bench/cluster.rs"]
mod cluster;
#[path = "shield_bench/loadgen.rs"]
mod loadgen;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{info_field, Server, ServerOptions};
use loadgen::{push_cmd, write_digits, DenyCheck, Plan, Rng, RunResult, RunSpec, Workload};

const LUA_BUCKET: &str = include_str!("shield_bench/token_bucket.lua");

/// Distinct keys of the random-key workloads (`k:000000` .. `k:099999`).
const KEYS: u64 = 100_000;
const KEY_DIGITS: usize = 6;

// ====================================================================== config

struct Config {
    quick: bool,
    reps: usize,
    warmup: Duration,
    measure: Duration,
    conns: usize,
    pipelines: Vec<usize>,
    memory_buckets: u64,
    cluster_clients: Vec<usize>,
    sections: Vec<String>,
    server_cpu: Option<usize>,
    client_cpu: Option<usize>,
    cell_module: Option<PathBuf>,
    absorball: AbsorballMode,
    out_dir: PathBuf,
    update_doc: bool,
    command_line: String,
    /// A run in which other load took more than this % of a pinned core is redone.
    max_other_cpu: f64,
    retries: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AbsorballMode {
    Auto,
    Off,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    env(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    env(name)
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

impl Config {
    fn from_env(args: &[String]) -> Config {
        let quick = args.iter().any(|a| a == "--quick")
            || env("SHIELD_BENCH_QUICK").is_some_and(|v| v != "0");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (server_cpu, client_cpu) = if ncpu >= 2 {
            (
                Some(env_num("SHIELD_BENCH_SERVER_CPU", 0)),
                Some(env_num("SHIELD_BENCH_CLIENT_CPU", 1)),
            )
        } else {
            (None, None)
        };
        let default_out = if quick {
            manifest.join("target/shield-bench-quick")
        } else {
            manifest.join("bench-results")
        };
        let out_dir = env("SHIELD_BENCH_OUT").map_or(default_out, PathBuf::from);
        let sections = env("SHIELD_BENCH_ONLY")
            .or_else(|| {
                args.iter()
                    .position(|a| a == "--only")
                    .and_then(|i| args.get(i + 1).cloned())
            })
            .unwrap_or_else(|| "single,memory,cluster".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let mut env_part = String::new();
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SHIELD_BENCH_") || k == "SHIELD_SERVER_BIN")
            .collect();
        vars.sort();
        for (k, v) in vars {
            let _ = write!(env_part, "{k}={v} ");
        }
        let extra: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "--bench")
            .collect();
        let command_line = if extra.is_empty() {
            format!("{env_part}cargo bench --bench shield_bench")
        } else {
            format!(
                "{env_part}cargo bench --bench shield_bench -- {}",
                extra.join(" ")
            )
        };
        Config {
            quick,
            reps: env_num("SHIELD_BENCH_REPS", if quick { 1 } else { 3 }),
            warmup: Duration::from_secs_f64(env_num(
                "SHIELD_BENCH_WARMUP",
                if quick { 0.2 } else { 0.5 },
            )),
            measure: Duration::from_secs_f64(env_num(
                "SHIELD_BENCH_SECS",
                if quick { 0.5 } else { 2.0 },
            )),
            conns: env_num("SHIELD_BENCH_CONNS", 50),
            pipelines: env_list("SHIELD_BENCH_PIPELINES", &[16, 1]),
            memory_buckets: env_num(
                "SHIELD_BENCH_MEMORY_BUCKETS",
                if quick { 100_000 } else { 1_000_000 },
            ),
            cluster_clients: env_list("SHIELD_BENCH_CLUSTER_CLIENTS", &[1, 16]),
            sections,
            server_cpu,
            client_cpu,
            cell_module: env("SHIELD_BENCH_REDIS_CELL").map(PathBuf::from),
            absorball: match env("SHIELD_BENCH_ABSORBALL").as_deref() {
                Some("off" | "0" | "no") => AbsorballMode::Off,
                _ => AbsorballMode::Auto,
            },
            update_doc: !quick && env("SHIELD_BENCH_OUT").is_none(),
            max_other_cpu: env_num("SHIELD_BENCH_MAX_OTHER_CPU", 15.0),
            retries: env_num("SHIELD_BENCH_RETRIES", 2),
            out_dir,
            command_line,
        }
    }

    /// The cores servers and load generator are pinned to.
    fn cores(&self) -> Vec<usize> {
        self.server_cpu.into_iter().chain(self.client_cpu).collect()
    }

    fn section(&self, s: &str) -> bool {
        self.sections.iter().any(|x| x == s)
    }

    fn describe_load(&self) -> String {
        format!(
            "each figure is the median of {} run(s) of {:.1} s, each after {:.1} s of warm-up; \
             runs of different workloads are interleaved",
            self.reps,
            self.measure.as_secs_f64(),
            self.warmup.as_secs_f64()
        )
    }
}

// ====================================================================== pinning

fn set_affinity(tid: i32, cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; the syscall only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Pins every thread of process `pid` to `cpu`.
fn pin_process(pid: u32, cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let ok = !tasks.is_empty() && tasks.iter().all(|&t| set_affinity(t, cpu));
    if !ok {
        eprintln!("warning: could not pin pid {pid} to CPU {cpu}");
    }
}

// ====================================================================== control helpers

fn addr_of(s: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], s.port()))
}

fn command_exists(c: &mut redis::Connection, name: &str) -> bool {
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

fn used_memory(c: &mut redis::Connection) -> Result<i64, String> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(c)
        .map_err(|e| e.to_string())?;
    info_field(&info, "used_memory")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no used_memory in INFO".to_string())
}

/// `used_memory` once it has stopped moving (a dict rehash in progress holds two tables).
fn settled_memory(c: &mut redis::Connection) -> Result<i64, String> {
    let mut last = used_memory(c)?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = used_memory(c)?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn flushall(addr: SocketAddr) -> Result<(), String> {
    let (errors, first) = loadgen::bulk(addr, 1, 1, |_, out| {
        push_cmd(out, &[b"FLUSHALL"]);
        1
    })?;
    if errors > 0 {
        return Err(format!("FLUSHALL: {}", first.unwrap_or_default()));
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ====================================================================== single-node workloads

const KEY: &str = "$KEY";
const SHA: &str = "$SHA";
const VAL16: &str = "1234567890123456";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Keys {
    /// One key for every request.
    Fixed(&'static str),
    /// `k:<6 digits>`, uniform over `KEYS` keys per request.
    Random,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    None,
    /// Run one request before measuring (drains a capacity-1 bucket).
    Once,
    /// Run this command first.
    Cmd(&'static [&'static str]),
    /// Run one request on every key of the random key space first (steady state).
    EachKey,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// No error, no denial.
    Admitted,
    /// Every reply a denial.
    Denied,
    /// No error.
    Ok,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Native,
    Shield,
    Lua,
    Window,
    Cell,
}

struct Spec {
    id: &'static str,
    label: &'static str,
    family: Family,
    /// Commands of one request; `$KEY` is the key, `$SHA` the Lua script's SHA1.
    cmds: &'static [&'static [&'static str]],
    keys: Keys,
    setup: Setup,
    expect: Expect,
    deny: DenyCheck,
    /// Skipped (reported "not available") unless `COMMAND INFO` knows this command.
    requires: Option<&'static str>,
}

const HOT: Keys = Keys::Fixed("hot");
const DRAINED: Keys = Keys::Fixed("drained");

/// Hot admitted bucket: capacity 10^12, period 10^10 s: a token is 10 ms of
/// refill, so it never runs dry, and the key stays live like `SET ... PX`.
const SHIELD_HOT: &[&str] = &["SHIELD.absorb", KEY, "1000000000000", "10000000000"];
/// The hot bucket with 10^6 tokens taken (10^4 s of refill): a live key for `SHIELD.inspect`.
const SHIELD_HOT_LIVE: &[&str] = &[
    "SHIELD.absorb",
    KEY,
    "1000000000000",
    "10000000000",
    "1000000",
];
/// Random-key bucket: one token = 60 s, capacity 10^6 (the key lives >= 60 s).
const SHIELD_RAND: &[&str] = &["SHIELD.absorb", KEY, "1000000", "60000000"];
/// Drained bucket: capacity 1, period 10^9 s.
const SHIELD_DENIED: &[&str] = &["SHIELD.absorb", KEY, "1", "1000000000"];

#[rustfmt::skip]
const SPECS: &[Spec] = &[
    Spec { id: "incr", label: "INCR hot (floor)", family: Family::Native, cmds: &[&["INCR", KEY]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "get", label: "GET of a string key", family: Family::Native, cmds: &[&["GET", KEY]], keys: Keys::Fixed("str"), setup: Setup::Cmd(&["SET", KEY, VAL16]), expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "set_hot", label: "SET hot <16-digit int> PX 60000", family: Family::Native, cmds: &[&["SET", KEY, VAL16, "PX", "60000"]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "set_rand", label: "SET k:<rand> <16-digit int> PX 60000", family: Family::Native, cmds: &[&["SET", KEY, VAL16, "PX", "60000"]], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "shield_hot", label: "SHIELD.absorb, one hot key (admitted)", family: Family::Shield, cmds: &[SHIELD_HOT], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "shield_rand", label: "SHIELD.absorb, 100k random keys (admitted)", family: Family::Shield, cmds: &[SHIELD_RAND], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "shield_denied", label: "SHIELD.absorb, drained bucket (denied)", family: Family::Shield, cmds: &[SHIELD_DENIED], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Shield, requires: Some("shield.absorb") },
    Spec { id: "shield_inspect", label: "SHIELD.inspect, one hot key", family: Family::Shield, cmds: &[&["SHIELD.inspect", KEY, "1000000000000", "10000000000"]], keys: HOT, setup: Setup::Cmd(SHIELD_HOT_LIVE), expect: Expect::Ok, deny: DenyCheck::None, requires: Some("shield.inspect") },
    Spec { id: "lua_hot", label: "Lua token bucket (EVALSHA), hot key", family: Family::Lua, cmds: &[&["EVALSHA", SHA, "1", KEY, "1000000000000", "10000000000"]], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: None },
    Spec { id: "lua_rand", label: "Lua token bucket (EVALSHA), 100k random keys", family: Family::Lua, cmds: &[&["EVALSHA", SHA, "1", KEY, "1000000", "60000000"]], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Shield, requires: None },
    Spec { id: "lua_denied", label: "Lua token bucket (EVALSHA), drained (denied)", family: Family::Lua, cmds: &[&["EVALSHA", SHA, "1", KEY, "1", "1000000000"]], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Shield, requires: None },
    Spec { id: "window_hot", label: "fixed window INCRBY+PEXPIRE, hot key", family: Family::Window, cmds: &[&["INCRBY", KEY, "1"], &["PEXPIRE", KEY, "60000"]], keys: HOT, setup: Setup::None, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "window_rand", label: "fixed window INCRBY+PEXPIRE, 100k random keys", family: Family::Window, cmds: &[&["INCRBY", KEY, "1"], &["PEXPIRE", KEY, "60000"]], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Ok, deny: DenyCheck::None, requires: None },
    Spec { id: "cell_hot", label: "CL.THROTTLE (redis-cell), hot key", family: Family::Cell, cmds: &[&["CL.THROTTLE", KEY, "1000000000", "1000000000", "1"]], keys: HOT, setup: Setup::None, expect: Expect::Admitted, deny: DenyCheck::Cell, requires: Some("cl.throttle") },
    Spec { id: "cell_rand", label: "CL.THROTTLE (redis-cell), 100k random keys", family: Family::Cell, cmds: &[&["CL.THROTTLE", KEY, "1000000", "1", "60"]], keys: Keys::Random, setup: Setup::EachKey, expect: Expect::Admitted, deny: DenyCheck::Cell, requires: Some("cl.throttle") },
    Spec { id: "cell_denied", label: "CL.THROTTLE (redis-cell), drained (denied)", family: Family::Cell, cmds: &[&["CL.THROTTLE", KEY, "0", "1", "1000000000"]], keys: DRAINED, setup: Setup::Once, expect: Expect::Denied, deny: DenyCheck::Cell, requires: Some("cl.throttle") },
];

/// Single-node figures that are cross-checked with `redis-benchmark`.
const CROSS_CHECK: &[&str] = &["incr", "set_hot", "shield_hot"];

fn spec(id: &str) -> &'static Spec {
    SPECS.iter().find(|s| s.id == id).expect("known spec id")
}

fn key_bytes(keys: Keys, n: u64) -> Vec<u8> {
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
fn push_request(out: &mut Vec<u8>, s: &Spec, key: &[u8], sha: &str, digits: &mut Vec<usize>) {
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
struct SingleWorkload {
    template: Vec<u8>,
    /// Digit offsets of each request's key(s).
    digits: Vec<Vec<usize>>,
    depth: usize,
    per_request: usize,
}

impl SingleWorkload {
    fn new(s: &Spec, depth: usize, sha: &str) -> SingleWorkload {
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
fn check_run(expect: Expect, r: &RunResult) -> Result<(), String> {
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

fn setup_spec(addr: SocketAddr, s: &Spec, sha: &str) -> Result<(), String> {
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

// ====================================================================== results

#[derive(Default, Clone)]
struct Figure {
    runs: Vec<RunResult>,
    invalid: Vec<String>,
    /// Kept runs that were still disturbed by other load after the retries.
    disturbed: usize,
}

impl Figure {
    fn rps(&self) -> f64 {
        median(self.runs.iter().map(RunResult::rps).collect())
    }
    fn q(&self, q: f64) -> f64 {
        median(self.runs.iter().map(|r| r.hist.quantile_us(q)).collect())
    }
    /// Median CPU use of the server(s), of the load generator, and of other
    /// load on the pinned cores, in % of one core.
    fn cpu(&self) -> (f64, f64, f64) {
        (
            median(self.runs.iter().map(|r| r.server_cpu * 100.0).collect()),
            median(self.runs.iter().map(|r| r.client_cpu * 100.0).collect()),
            median(self.runs.iter().map(|r| r.other_cpu * 100.0).collect()),
        )
    }
    fn rps_range(&self) -> (f64, f64) {
        let v: Vec<f64> = self.runs.iter().map(RunResult::rps).collect();
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    }
    fn valid(&self) -> bool {
        !self.runs.is_empty() && self.invalid.is_empty()
    }
}

struct MemFigure {
    label: String,
    per_key: Vec<f64>,
    usage: Option<i64>,
    invalid: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Scenario {
    FixedKey,
    VariableKey,
    Mixed2,
    Mixed10,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::FixedKey,
        Scenario::VariableKey,
        Scenario::Mixed2,
        Scenario::Mixed10,
    ];
    fn name(self) -> &'static str {
        match self {
            Scenario::FixedKey => "fixed_key",
            Scenario::VariableKey => "variable_key",
            Scenario::Mixed2 => "mixed_2keys",
            Scenario::Mixed10 => "mixed_10keys",
        }
    }
    fn descriptors(self) -> usize {
        match self {
            Scenario::FixedKey | Scenario::VariableKey => 1,
            Scenario::Mixed2 => 2,
            Scenario::Mixed10 => 10,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Strategy {
    Sequential,
    Parallel,
}

impl Strategy {
    const ALL: [Strategy; 2] = [Strategy::Sequential, Strategy::Parallel];
    fn short(self) -> &'static str {
        match self {
            Strategy::Sequential => "sequential",
            Strategy::Parallel => "pipelines",
        }
    }
}

struct Results {
    server_desc: String,
    server_version: (String, String),
    single: HashMap<(&'static str, usize), Figure>,
    unavailable: Vec<&'static str>,
    /// (id, depth) -> redis-benchmark (req/s, server CPU %) per run.
    cross: HashMap<(&'static str, usize), Vec<(f64, f64)>>,
    cross_note: Option<String>,
    memory: Vec<MemFigure>,
    memory_note: Option<String>,
    cluster: HashMap<(Scenario, Strategy, usize), Figure>,
    cluster_note: Option<String>,
    cluster_path: Option<String>,
    /// Runs discarded because other load took CPU from the pinned cores.
    discarded: usize,
}

/// Runs `once` until other load on the pinned cores stays under the limit
/// (`SHIELD_BENCH_MAX_OTHER_CPU` % of a core), at most `1 + SHIELD_BENCH_RETRIES`
/// times. Disturbed attempts are discarded (and counted); if every attempt is
/// disturbed the least disturbed one is kept and reported as such.
fn quiet_run(
    cfg: &Config,
    discarded: &mut usize,
    mut once: impl FnMut() -> Result<RunResult, String>,
) -> Result<(RunResult, bool), String> {
    let mut best: Option<RunResult> = None;
    for attempt in 0..=cfg.retries {
        let r = once()?;
        let other = r.other_cpu * 100.0;
        // NaN (no pinning, nothing to measure) counts as quiet.
        if other.is_nan() || other <= cfg.max_other_cpu {
            return Ok((r, false));
        }
        println!(
            "      (other load took {other:.0} % of a pinned core: run discarded{})",
            if attempt < cfg.retries { ", again" } else { "" }
        );
        *discarded += 1;
        if best.as_ref().is_none_or(|b| r.other_cpu < b.other_cpu) {
            best = Some(r);
        }
    }
    *discarded -= 1; // the one kept
    Ok((best.expect("at least one attempt"), true))
}

// ====================================================================== single node

fn run_single(cfg: &Config, res: &mut Results) -> Result<(), String> {
    let mut opts = ServerOptions::default();
    if let Some(cell) = &cfg.cell_module {
        opts = opts.arg("--loadmodule").arg(cell.display().to_string());
    }
    let server = Server::start(opts);
    if let Some(pid) = server.pid() {
        pin_process(pid, cfg.server_cpu);
    }
    let addr = addr_of(&server);
    let mut ctl = server.conn();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(LUA_BUCKET)
        .query(&mut ctl)
        .map_err(|e| format!("SCRIPT LOAD: {e}"))?;
    check_lua(&mut ctl, &sha)?;

    let specs: Vec<&'static Spec> = SPECS
        .iter()
        .filter(|s| {
            let ok = s.requires.is_none_or(|c| command_exists(&mut ctl, c));
            if !ok {
                res.unavailable.push(s.id);
            }
            ok
        })
        .collect();
    for id in &res.unavailable {
        println!(
            "  {id}: not run ({} not available)",
            spec(id).requires.unwrap_or("?")
        );
    }

    if cfg.section("single") {
        println!(
            "\n== single node: {} connections, pipelines {:?}, {}",
            cfg.conns,
            cfg.pipelines,
            cfg.describe_load()
        );
        let total = cfg.reps * specs.len() * cfg.pipelines.len();
        let mut done = 0;
        for rep in 0..cfg.reps {
            for s in &specs {
                for &depth in &cfg.pipelines {
                    done += 1;
                    let (r, disturbed) = quiet_run(cfg, &mut res.discarded, || {
                        setup_spec(addr, s, &sha)?;
                        let mut w = SingleWorkload::new(s, depth, &sha);
                        loadgen::run(RunSpec {
                            clients: vec![vec![addr]; cfg.conns],
                            warmup: cfg.warmup,
                            measure: cfg.measure,
                            deny: s.deny,
                            workload: &mut w,
                            seed: 0x5EED + rep as u64,
                            server_pids: server.pid().into_iter().collect(),
                            cores: cfg.cores(),
                        })
                    })?;
                    let fig = res.single.entry((s.id, depth)).or_default();
                    fig.disturbed += disturbed as usize;
                    let verdict = check_run(s.expect, &r);
                    println!(
                        "  [{done}/{total}] {:<15} P{:<2} {:>11} req/s  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  cpu server {:>3.0}% loadgen {:>3.0}% other {:>3.0}%{}",
                        s.id,
                        depth,
                        fmt_int(r.rps()),
                        r.hist.quantile_us(0.5),
                        r.hist.quantile_us(0.99),
                        r.hist.quantile_us(0.999),
                        r.server_cpu * 100.0,
                        r.client_cpu * 100.0,
                        r.other_cpu * 100.0,
                        match &verdict {
                            Ok(()) => String::new(),
                            Err(e) => format!("  INVALID: {e}"),
                        }
                    );
                    if let Err(e) = verdict {
                        fig.invalid.push(e);
                    }
                    fig.runs.push(r);
                }
            }
        }
        cross_check(cfg, &server, &sha, res)?;
    }
    if cfg.section("memory") {
        run_memory(cfg, &server, &mut ctl, &sha, &specs, res)?;
    }
    Ok(())
}

/// The Lua bucket must answer like SHIELD.absorb on the basics before we time it.
fn check_lua(c: &mut redis::Connection, sha: &str) -> Result<(), String> {
    let call = |c: &mut redis::Connection, key: &str, cap: u64, period: u64| -> i64 {
        redis::cmd("EVALSHA")
            .arg(sha)
            .arg(1)
            .arg(key)
            .arg(cap)
            .arg(period)
            .query(c)
            .unwrap_or(i64::MIN)
    };
    let got = [
        call(c, "lua:check", 3, 60),
        call(c, "lua:check", 3, 60),
        call(c, "lua:check", 3, 60),
        call(c, "lua:check", 3, 60),
    ];
    let _: () = redis::cmd("DEL")
        .arg("lua:check")
        .query(c)
        .map_err(|e| e.to_string())?;
    if got != [2, 1, 0, -1] {
        return Err(format!(
            "Lua token bucket self-check: got {got:?}, want [2, 1, 0, -1]"
        ));
    }
    Ok(())
}

fn benchmark_tool() -> Option<&'static str> {
    ["redis-benchmark", "valkey-benchmark"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
}

/// The same commands through `redis-benchmark` (same connections, same
/// pipeline depth, same pinned core): if our load generator were the
/// bottleneck, redis-benchmark would get more.
fn cross_check(cfg: &Config, server: &Server, sha: &str, res: &mut Results) -> Result<(), String> {
    let Some(tool) = benchmark_tool() else {
        res.cross_note = Some("redis-benchmark not found: cross-check not run".into());
        return Ok(());
    };
    println!("\n== load generator cross-check with {tool}");
    let addr = addr_of(server);
    for rep in 0..cfg.reps {
        for id in CROSS_CHECK {
            let s = spec(id);
            for &depth in &cfg.pipelines {
                let Some(fig) = res.single.get(&(s.id, depth)) else {
                    continue;
                };
                setup_spec(addr, s, sha)?;
                let n = ((fig.rps() * cfg.measure.as_secs_f64()) as u64).max(10_000);
                let args: Vec<String> = s.cmds[0]
                    .iter()
                    .map(|a| match *a {
                        KEY => "hot".to_string(),
                        other => other.to_string(),
                    })
                    .collect();
                let spid = server.pid().map(|p| p.to_string()).unwrap_or_default();
                let (t0, c0) = (Instant::now(), loadgen::cpu_seconds(&spid));
                let out = Command::new(tool)
                    .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
                    .args(["-c", &cfg.conns.to_string(), "-n", &n.to_string()])
                    .args(["-P", &depth.to_string(), "--csv"])
                    .args(&args)
                    .output()
                    .map_err(|e| format!("{tool}: {e}"))?;
                let server_cpu =
                    (loadgen::cpu_seconds(&spid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
                let text = String::from_utf8_lossy(&out.stdout);
                // "test","rps",... then "<name>","<rps>",...
                let rps = text
                    .lines()
                    .nth(1)
                    .and_then(|l| l.split(',').nth(1))
                    .and_then(|v| v.trim_matches('"').parse::<f64>().ok());
                match rps {
                    Some(rps) => {
                        println!(
                            "  [{}/{}] {:<12} P{:<2} {tool}: {:>11} req/s (server cpu {server_cpu:>3.0}%)   shield_bench: {:>11} req/s",
                            rep + 1,
                            cfg.reps,
                            id,
                            depth,
                            fmt_int(rps),
                            fmt_int(fig.rps())
                        );
                        res.cross
                            .entry((s.id, depth))
                            .or_default()
                            .push((rps, server_cpu));
                    }
                    None => {
                        res.cross_note =
                            Some(format!("could not parse {tool} output: {}", text.trim()));
                    }
                }
            }
        }
    }
    Ok(())
}

// ====================================================================== memory

fn run_memory(
    cfg: &Config,
    server: &Server,
    ctl: &mut redis::Connection,
    sha: &str,
    specs: &[&'static Spec],
    res: &mut Results,
) -> Result<(), String> {
    let n = cfg.memory_buckets;
    println!(
        "\n== memory: used_memory growth over {} keys, {} run(s)",
        fmt_int(n as f64),
        cfg.reps
    );
    let addr = addr_of(server);
    let have_cell = specs.iter().any(|s| s.family == Family::Cell);
    // (label, commands of one bucket, replies per bucket); $VAL = a 16-digit integer.
    let mut kinds: Vec<(&str, Vec<Vec<&str>>)> = vec![
        (
            "SHIELD.absorb k 1 3600 (idle bucket)",
            vec![vec!["SHIELD.absorb", KEY, "1", "3600"]],
        ),
        (
            "SET k <16-digit int> PX 3600000",
            vec![vec!["SET", KEY, "$VAL", "PX", "3600000"]],
        ),
        (
            "Lua token bucket (EVALSHA)",
            vec![vec!["EVALSHA", SHA, "1", KEY, "1", "3600"]],
        ),
        (
            "fixed window INCRBY k 1 + PEXPIRE k 3600000",
            vec![vec!["INCRBY", KEY, "1"], vec!["PEXPIRE", KEY, "3600000"]],
        ),
    ];
    if have_cell {
        kinds.push((
            "CL.THROTTLE (redis-cell)",
            vec![vec!["CL.THROTTLE", KEY, "0", "1", "3600"]],
        ));
    }
    for (label, _) in &kinds {
        res.memory.push(MemFigure {
            label: label.to_string(),
            per_key: vec![],
            usage: None,
            invalid: vec![],
        });
    }
    for rep in 0..cfg.reps {
        for (ki, (label, cmds)) in kinds.iter().enumerate() {
            flushall(addr)?;
            let before = settled_memory(ctl)?;
            let (errors, first) = loadgen::bulk(addr, n, 1000, |i, out| {
                let mut key = *b"k:0000000";
                write_digits(&mut key[2..], i);
                let mut val = *b"1000000000000000";
                write_digits(&mut val[1..], i);
                for cmd in cmds {
                    let args: Vec<&[u8]> = cmd
                        .iter()
                        .map(|a| match *a {
                            KEY => &key[..],
                            SHA => sha.as_bytes(),
                            "$VAL" => &val[..],
                            other => other.as_bytes(),
                        })
                        .collect();
                    push_cmd(out, &args);
                }
                cmds.len()
            })?;
            let after = settled_memory(ctl)?;
            let dbsize: u64 = redis::cmd("DBSIZE").query(ctl).map_err(|e| e.to_string())?;
            let usage: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg("k:0000001")
                .query(ctl)
                .ok();
            let per_key = (after - before) as f64 / n as f64;
            let fig = &mut res.memory[ki];
            if errors > 0 {
                fig.invalid
                    .push(format!("{errors} errors: {}", first.unwrap_or_default()));
            } else if dbsize != n {
                fig.invalid.push(format!("DBSIZE {dbsize} != {n}"));
            }
            fig.usage = usage;
            fig.per_key.push(per_key);
            println!(
                "  [{}/{}] {:<45} {:>7.1} bytes/key (used_memory {} -> {}), MEMORY USAGE {}",
                rep + 1,
                cfg.reps,
                label,
                per_key,
                before,
                after,
                usage.map_or("-".into(), |u| u.to_string())
            );
        }
    }
    flushall(addr)?;
    Ok(())
}

// ====================================================================== cluster

/// Bucket parameters of the cluster descriptors (never run dry during a run).
const C_HOT: (&str, &str) = ("1000000000000", "10000000000");
const C_RAND: (&str, &str) = ("1000000", "60000000");

struct ClusterWorkload<'a> {
    scenario: Scenario,
    strategy: Strategy,
    absorball: bool,
    cluster: &'a cluster::Cluster,
    /// For each master, user numbers whose `{u:NNNNNN}` tag hashes to it.
    tags: &'a [Vec<u32>],
    groups: Vec<(usize, Vec<Vec<u8>>)>,
}

impl ClusterWorkload<'_> {
    /// The request's descriptors as slot groups: (master, keys of one slot).
    fn fill_groups(&mut self, rng: &mut Rng) {
        self.groups.clear();
        let tag_key = |n: u64, suffix: &str| format!("{{u:{n:06}}}:{suffix}").into_bytes();
        match self.scenario {
            Scenario::FixedKey => {
                let k = b"fixed".to_vec();
                self.groups.push((self.cluster.master_of(&k), vec![k]));
            }
            Scenario::VariableKey => {
                let mut k = b"v:000000".to_vec();
                write_digits(&mut k[2..], rng.below(KEYS));
                self.groups.push((self.cluster.master_of(&k), vec![k]));
            }
            Scenario::Mixed2 => {
                let n = rng.below(KEYS);
                let keys = vec![tag_key(n, "s"), tag_key(n, "m")];
                self.groups.push((self.cluster.master_of(&keys[0]), keys));
            }
            Scenario::Mixed10 => {
                // Three tags, one per master; 4 + 3 + 3 descriptors, the 4 on a random master.
                let four = rng.below(3) as usize;
                for (m, tags) in self.tags.iter().enumerate() {
                    let n = tags[rng.below(tags.len() as u64) as usize] as u64;
                    let count = if m == four { 4 } else { 3 };
                    let keys: Vec<Vec<u8>> =
                        (0..count).map(|d| tag_key(n, &format!("d{d}"))).collect();
                    self.groups.push((m, keys));
                }
            }
        }
    }
}

impl Workload for ClusterWorkload<'_> {
    fn next_plan(&mut self, _client: usize, rng: &mut Rng, plan: &mut Plan) {
        self.fill_groups(rng);
        let (cap, period) = if self.scenario == Scenario::FixedKey {
            C_HOT
        } else {
            C_RAND
        };
        let (cap, period) = (cap.as_bytes(), period.as_bytes());
        // Commands as (master, args).
        let mut cmds: Vec<(usize, Vec<&[u8]>)> = Vec::new();
        for (m, keys) in &self.groups {
            if self.absorball && keys.len() > 1 {
                let mut args: Vec<&[u8]> = vec![b"SHIELD.absorball"];
                for k in keys {
                    args.extend_from_slice(&[k, cap, period, b"1"]);
                }
                cmds.push((*m, args));
            } else {
                for k in keys {
                    cmds.push((*m, vec![b"SHIELD.absorb", k, cap, period]));
                }
            }
        }
        match self.strategy {
            Strategy::Sequential => {
                for (m, args) in &cmds {
                    plan.stage();
                    plan.cmd(*m, args);
                }
            }
            Strategy::Parallel => {
                plan.stage();
                for (m, args) in &cmds {
                    plan.cmd(*m, args);
                }
            }
        }
        plan.requests = 1;
        plan.replies_per_request = None;
    }
}

fn run_cluster(cfg: &Config, res: &mut Results) -> Result<(), String> {
    println!("\n== cluster: 6 nodes (3 masters + 3 replicas), all on the server CPU");
    let cl = cluster::start(&|pid| pin_process(pid, cfg.server_cpu))?;
    let mut ctl = cl.nodes[0].conn();
    let have_all = command_exists(&mut ctl, "shield.absorball");
    let use_all = have_all && cfg.absorball == AbsorballMode::Auto;
    let path = if use_all {
        "SHIELD.absorball: one command per slot group (mixed_2keys: 1 command, mixed_10keys: 3)"
            .to_string()
    } else if have_all {
        "one SHIELD.absorb per descriptor (SHIELD.absorball exists but SHIELD_BENCH_ABSORBALL=off)"
            .to_string()
    } else {
        "one SHIELD.absorb per descriptor (SHIELD.absorball not available on this build)"
            .to_string()
    };
    println!("  multi-descriptor path: {path}");
    res.cluster_path = Some(path);

    let mut tags: Vec<Vec<u32>> = vec![Vec::new(); 3];
    for n in 0..KEYS as u32 {
        let k = format!("{{u:{n:06}}}");
        tags[cl.master_of(k.as_bytes())].push(n);
    }
    if tags.iter().any(Vec::is_empty) {
        return Err("a master owns no user tag".into());
    }
    println!("  {}", cfg.describe_load());
    let total = cfg.reps * cfg.cluster_clients.len() * Scenario::ALL.len() * Strategy::ALL.len();
    let mut done = 0;
    for rep in 0..cfg.reps {
        for &clients in &cfg.cluster_clients {
            for scenario in Scenario::ALL {
                for strategy in Strategy::ALL {
                    done += 1;
                    let (r, disturbed) = quiet_run(cfg, &mut res.discarded, || {
                        let mut w = ClusterWorkload {
                            scenario,
                            strategy,
                            absorball: use_all,
                            cluster: &cl,
                            tags: &tags,
                            groups: Vec::new(),
                        };
                        loadgen::run(RunSpec {
                            clients: vec![cl.masters.clone(); clients],
                            warmup: cfg.warmup,
                            measure: cfg.measure,
                            deny: DenyCheck::Shield,
                            workload: &mut w,
                            seed: 0xC1u64 + rep as u64,
                            server_pids: cl.nodes.iter().filter_map(Server::pid).collect(),
                            cores: cfg.cores(),
                        })
                    })?;
                    let verdict = check_run(Expect::Admitted, &r);
                    println!(
                        "  [{done}/{total}] c={clients:<3} {:<13} {:<10} {:>9} req/s  p50 {:>8.1} us  p95 {:>8.1} us  p99 {:>8.1} us  cpu servers {:>3.0}% loadgen {:>3.0}% other {:>3.0}%{}",
                        scenario.name(),
                        strategy.short(),
                        fmt_int(r.rps()),
                        r.hist.quantile_us(0.5),
                        r.hist.quantile_us(0.95),
                        r.hist.quantile_us(0.99),
                        r.server_cpu * 100.0,
                        r.client_cpu * 100.0,
                        r.other_cpu * 100.0,
                        match &verdict {
                            Ok(()) => String::new(),
                            Err(e) => format!("  INVALID: {e}"),
                        }
                    );
                    let fig = res
                        .cluster
                        .entry((scenario, strategy, clients))
                        .or_default();
                    fig.disturbed += disturbed as usize;
                    if let Err(e) = verdict {
                        fig.invalid.push(e);
                    }
                    fig.runs.push(r);
                }
            }
        }
    }
    // Which commands the masters actually ran (proves the path that was used).
    let mut counts: Vec<String> = Vec::new();
    for cmd in ["shield.absorb", "shield.absorball"] {
        let mut calls = 0u64;
        for m in &cl.nodes {
            let mut c = m.conn();
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query(&mut c)
                .map_err(|e| e.to_string())?;
            // Module commands keep their registered case ("cmdstat_SHIELD.absorb").
            calls += info_field(&info.to_lowercase(), &format!("cmdstat_{cmd}"))
                .and_then(|v| v.strip_prefix("calls=")?.split(',').next()?.parse().ok())
                .unwrap_or(0);
        }
        counts.push(format!("{calls} {cmd}"));
    }
    let counted = format!(
        "calls counted by the nodes' INFO commandstats: {}",
        counts.join(", ")
    );
    println!("  {counted}");
    if let Some(p) = res.cluster_path.as_mut() {
        *p = format!("{p} ({counted})");
    }
    Ok(())
}

// ====================================================================== report

fn fmt_int(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_us(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn fmt_ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let lscpu = sh("lscpu", &[]);
    let model = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Model name:"))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let hyper = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Hypervisor vendor:"))
        .map(|m| format!(", {} VM", m.trim()))
        .unwrap_or_default();
    // Not available_parallelism(): that counts only the CPUs we are pinned to.
    // SAFETY: plain sysconf query.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!(
        "{model}{hyper}, {cpus} CPUs, {mem}, Linux {}",
        sh("uname", &["-r"])
    )
}

struct Target {
    what: String,
    measured: String,
    yardstick: String,
    ratio: f64,
    limit: f64,
    /// true: ratio must be >= limit; false: <= limit.
    at_least: bool,
    valid: bool,
}

impl Target {
    fn pass(&self) -> Option<bool> {
        if !self.valid || !self.ratio.is_finite() {
            return None;
        }
        Some(if self.at_least {
            self.ratio >= self.limit
        } else {
            self.ratio <= self.limit
        })
    }
    fn verdict(&self) -> &'static str {
        match self.pass() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "not measured",
        }
    }
}

fn targets(cfg: &Config, res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let fig = |id: &str, d: usize| res.single.get(&(spec(id).id, d));
    let deep = cfg.pipelines.iter().copied().max().unwrap_or(16);
    for (id, yard, what) in [
        ("shield_hot", "set_hot", "admitted, one hot key"),
        ("shield_rand", "set_rand", "admitted, 100k random keys"),
        ("shield_denied", "get", "denied (drained bucket)"),
    ] {
        if let (Some(a), Some(b)) = (fig(id, deep), fig(yard, deep)) {
            t.push(Target {
                what: format!("{what}: throughput, pipeline {deep}"),
                measured: format!("{} req/s", fmt_int(a.rps())),
                yardstick: format!("{} req/s ({})", fmt_int(b.rps()), spec(yard).label),
                ratio: a.rps() / b.rps(),
                limit: 0.9,
                at_least: true,
                valid: a.valid() && b.valid(),
            });
        }
    }
    if cfg.pipelines.contains(&1) {
        for (id, yard, what) in [
            ("shield_hot", "set_hot", "one hot key"),
            ("shield_rand", "set_rand", "100k random keys"),
        ] {
            if let (Some(a), Some(b)) = (fig(id, 1), fig(yard, 1)) {
                t.push(Target {
                    what: format!("{what}: p99 latency, no pipelining"),
                    measured: format!("{} us", fmt_us(a.q(0.99))),
                    yardstick: format!("{} us ({})", fmt_us(b.q(0.99)), spec(yard).label),
                    ratio: a.q(0.99) / b.q(0.99),
                    limit: 1.1,
                    at_least: false,
                    valid: a.valid() && b.valid(),
                });
            }
        }
    }
    let mem = |prefix: &str| res.memory.iter().find(|m| m.label.starts_with(prefix));
    if let (Some(a), Some(b)) = (mem("SHIELD"), mem("SET")) {
        let (ma, mb) = (median(a.per_key.clone()), median(b.per_key.clone()));
        t.push(Target {
            what: "memory per idle bucket".into(),
            measured: format!("{ma:.1} bytes"),
            yardstick: format!("{mb:.1} bytes (SET k <16-digit int> PX)"),
            ratio: ma / mb,
            limit: 1.0,
            at_least: false,
            valid: a.invalid.is_empty() && b.invalid.is_empty(),
        });
    }
    for &c in &cfg.cluster_clients {
        let a = res.cluster.get(&(Scenario::Mixed10, Strategy::Parallel, c));
        let b = res
            .cluster
            .get(&(Scenario::FixedKey, Strategy::Parallel, c));
        if let (Some(a), Some(b)) = (a, b) {
            t.push(Target {
                what: format!("cluster mixed_10keys p50, slot-grouped pipelines, {c} client(s)"),
                measured: format!("{} us", fmt_us(a.q(0.5))),
                yardstick: format!("{} us (fixed_key, same strategy)", fmt_us(b.q(0.5))),
                ratio: a.q(0.5) / b.q(0.5),
                limit: 2.0,
                at_least: false,
                valid: a.valid() && b.valid(),
            });
        }
    }
    t
}

fn markdown(cfg: &Config, res: &Results, elapsed: Duration, date: &str) -> String {
    let mut m = String::new();
    let w = &mut m;
    let _ = writeln!(w, "# redis-shield benchmark results\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| date | {date} |");
    let _ = writeln!(w, "| command | `{}` |", cfg.command_line);
    let _ = writeln!(
        w,
        "| duration | {:.0} s{} |",
        elapsed.as_secs_f64(),
        if cfg.quick {
            " (quick mode: indicative only)"
        } else {
            ""
        }
    );
    let _ = writeln!(w, "| machine | {} |", machine());
    let _ = writeln!(w, "| server | {} |", res.server_desc);
    let git = sh(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ],
    );
    let _ = writeln!(
        w,
        "| module | `target/release/libredis_shield.so`, built from git `{}` |",
        if git.is_empty() { "?" } else { &git }
    );
    let pin = match (cfg.server_cpu, cfg.client_cpu) {
        (Some(s), Some(c)) => {
            format!("server(s) on CPU {s}, load generator on CPU {c} (sched_setaffinity)")
        }
        _ => "none (fewer than 2 CPUs)".into(),
    };
    let _ = writeln!(w, "| pinning | {pin} |");
    let _ = writeln!(
        w,
        "| quiet runs | a run during which other load took more than {:.0} % of a pinned core \
         (`/proc/stat` busy time minus the benchmark's own processes) is discarded and redone, \
         up to {} times: {} run(s) discarded in this run |",
        cfg.max_other_cpu, cfg.retries, res.discarded
    );
    let _ = writeln!(w, "| method | closed loop; {} |\n", cfg.describe_load());

    let targets = targets(cfg, res);
    if !targets.is_empty() {
        let _ = writeln!(w, "## Targets (issue #4)\n");
        if res.server_version.0 != "redis" || !res.server_version.1.starts_with("7.0") {
            let _ = writeln!(
                w,
                "The targets are defined on Redis 7.0; this run is on {} {}.\n",
                res.server_version.0, res.server_version.1
            );
        }
        let _ = writeln!(w, "| target | SHIELD | yardstick (same run) | ratio | limit | result |\n|---|---:|---:|---:|---:|---|");
        for t in &targets {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} {:.2} | **{}** |",
                t.what,
                t.measured,
                t.yardstick,
                fmt_ratio(t.ratio),
                if t.at_least { "≥" } else { "≤" },
                t.limit,
                t.verdict()
            );
        }
        let _ = writeln!(w);
    }

    if !res.single.is_empty() {
        let _ = writeln!(
            w,
            "## Single node: throughput and latency\n\n{} connections. A request of the fixed-window pattern is its \
             two commands (INCRBY + PEXPIRE); every other request is one command. Latency is from writing a \
             pipeline to reading that request's reply. `× INCR`: throughput relative to `INCR hot` at the \
             same pipeline depth in this run. Spread: lowest and highest run.\n",
            cfg.conns
        );
        for &depth in &cfg.pipelines {
            let incr = res
                .single
                .get(&("incr", depth))
                .map_or(f64::NAN, Figure::rps);
            let title = if depth == 1 {
                "No pipelining".to_string()
            } else {
                format!("Pipelines of {depth}")
            };
            let _ = writeln!(w, "### {title}\n");
            let _ = writeln!(w, "| workload | req/s | spread | × INCR | p50 µs | p99 µs | p99.9 µs | CPU % server / loadgen / other | replies |\n|---|---:|---:|---:|---:|---:|---:|---:|---|");
            for s in SPECS {
                let Some(f) = res.single.get(&(s.id, depth)) else {
                    continue;
                };
                let (lo, hi) = f.rps_range();
                let check = if f.invalid.is_empty() {
                    match s.expect {
                        Expect::Admitted => "all admitted".to_string(),
                        Expect::Denied => "all denied".to_string(),
                        Expect::Ok => "no errors".to_string(),
                    }
                } else {
                    format!("INVALID: {}", f.invalid[0])
                };
                let check = if f.disturbed > 0 {
                    format!("{check}; {} run(s) disturbed by other load", f.disturbed)
                } else {
                    check
                };
                let (scpu, ccpu, ocpu) = f.cpu();
                let _ = writeln!(
                    w,
                    "| {} | {} | {}–{} | {} | {} | {} | {} | {scpu:.0} / {ccpu:.0} / {ocpu:.0} % | {} |",
                    s.label,
                    fmt_int(f.rps()),
                    fmt_int(lo),
                    fmt_int(hi),
                    fmt_ratio(f.rps() / incr),
                    fmt_us(f.q(0.5)),
                    fmt_us(f.q(0.99)),
                    fmt_us(f.q(0.999)),
                    check
                );
            }
            let _ = writeln!(w);
        }
        let skipped: Vec<String> = res
            .unavailable
            .iter()
            .map(|id| format!("`{}` ({})", spec(id).label, spec(id).requires.unwrap_or("")))
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(
                w,
                "Not run (command not available on this server{}): {}.\n",
                if cfg.cell_module.is_none() {
                    "; set `SHIELD_BENCH_REDIS_CELL=/path/to/libredis_cell.so` for redis-cell"
                } else {
                    ""
                },
                skipped.join(", ")
            );
        }

        let _ = writeln!(w, "### Load generator check\n");
        let cpus: Vec<(&str, usize, f64, f64)> = res
            .single
            .iter()
            .filter(|(_, f)| !f.runs.is_empty())
            .map(|((id, d), f)| (*id, *d, f.cpu().0, f.cpu().1))
            .collect();
        if !cpus.is_empty() {
            let lo = cpus.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
            let hi = cpus.iter().map(|c| c.2).fold(0.0, f64::max);
            let gen = cpus.iter().map(|c| c.3).fold(0.0, f64::max);
            let mut below: Vec<String> = cpus
                .iter()
                .filter(|c| c.2 < 90.0)
                .map(|c| format!("`{}` P{} ({:.0} %)", c.0, c.1, c.2))
                .collect();
            below.sort();
            let _ = writeln!(
                w,
                "CPU use measured from `/proc/<pid>/stat` over each window: the server process used \
                 {lo:.0}–{hi:.0} % of its core across the single-node figures (medians), the load generator \
                 at most {gen:.0} % of its own. {}\n",
                if below.is_empty() {
                    "Every figure is server-bound: the server had no idle time, so the load generator \
                     was not the limit."
                        .to_string()
                } else {
                    format!(
                        "Below 90 % (the server was not saturated, so these figures may be limited by \
                         the load generator or disturbed by other load on the machine): {}.",
                        below.join(", ")
                    )
                }
            );
        }
        if let Some(note) = &res.cross_note {
            let _ = writeln!(w, "{note}\n");
        }
        if !res.cross.is_empty() {
            let _ = writeln!(
                w,
                "The same commands driven by `redis-benchmark` (C, event loop) with the same connections, \
                 pipeline depth and CPU. If `shield_bench` were the bottleneck, redis-benchmark would get more.\n"
            );
            let _ = writeln!(w, "| command | pipeline | shield_bench req/s | server CPU | redis-benchmark req/s | server CPU | shield_bench / redis-benchmark |\n|---|---:|---:|---:|---:|---:|---:|");
            for id in CROSS_CHECK {
                for &depth in &cfg.pipelines {
                    if let (Some(f), Some(rb)) =
                        (res.single.get(&(*id, depth)), res.cross.get(&(*id, depth)))
                    {
                        let rb_cpu = median(rb.iter().map(|r| r.1).collect());
                        let rb = median(rb.iter().map(|r| r.0).collect());
                        let _ = writeln!(
                            w,
                            "| {} | {} | {} | {:.0} % | {} | {rb_cpu:.0} % | {} |",
                            spec(id).label,
                            depth,
                            fmt_int(f.rps()),
                            f.cpu().0,
                            fmt_int(rb),
                            fmt_ratio(f.rps() / rb)
                        );
                    }
                }
            }
            let _ = writeln!(w);
        }
    }

    if !res.memory.is_empty() {
        let _ = writeln!(
            w,
            "## Memory per bucket\n\n`used_memory` growth over {} keys (`k:0000000`…), after `FLUSHALL`, once the \
             dict rehash has settled; divided by the number of keys. Includes the keyspace and expires \
             dict entries. `MEMORY USAGE` is one key's own estimate.\n",
            fmt_int(cfg.memory_buckets as f64)
        );
        let set = res
            .memory
            .iter()
            .find(|m| m.label.starts_with("SET"))
            .map_or(f64::NAN, |m| median(m.per_key.clone()));
        let _ = writeln!(
            w,
            "| what | bytes per key | × SET PX | MEMORY USAGE |\n|---|---:|---:|---:|"
        );
        for mf in &res.memory {
            let b = median(mf.per_key.clone());
            let _ = writeln!(
                w,
                "| {}{} | {:.1} | {} | {} |",
                mf.label,
                if mf.invalid.is_empty() {
                    String::new()
                } else {
                    format!(" (INVALID: {})", mf.invalid[0])
                },
                b,
                fmt_ratio(b / set),
                mf.usage.map_or("-".into(), |u| u.to_string())
            );
        }
        let _ = writeln!(w);
    } else if let Some(note) = &res.memory_note {
        let _ = writeln!(w, "## Memory per bucket\n\n{note}\n");
    }

    let _ = writeln!(
        w,
        "## Cluster: requests that must pass several rate limits\n"
    );
    if let Some(note) = &res.cluster_note {
        let _ = writeln!(w, "{note}\n");
    }
    if !res.cluster.is_empty() {
        let _ = writeln!(
            w,
            "6 nodes (3 masters + 3 replicas, all on the server CPU), module loaded on each. A request carries \
             1, 1, 2 or 10 descriptors (`fixed_key`: one key; `variable_key`: one of 100k keys; \
             `mixed_2keys`: `{{u:N}}:s` + `{{u:N}}:m`, one slot; `mixed_10keys`: 4+3+3 keys under three user \
             tags, one tag per master) and is done when every descriptor is answered. Strategies: \
             **sequential** sends one command at a time; **pipelines** groups the commands by slot, \
             the groups by node, and writes one pipeline per node at once. Multi-descriptor path: {}. \
             Clients: closed-loop virtual clients, each with one connection per master. \
             `cost`: fixed_key's throughput / this scenario's; `p50 ×`: this p50 / fixed_key's p50 (same \
             strategy, same clients).\n",
            res.cluster_path.as_deref().unwrap_or("?")
        );
        let _ = writeln!(w, "| clients | scenario (descriptors) | strategy | req/s | p50 µs | p95 µs | p99 µs | cost vs fixed_key | p50 × fixed_key | CPU % servers / loadgen / other |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for &c in &cfg.cluster_clients {
            for sc in Scenario::ALL {
                for st in Strategy::ALL {
                    let Some(f) = res.cluster.get(&(sc, st, c)) else {
                        continue;
                    };
                    let fixed = res.cluster.get(&(Scenario::FixedKey, st, c));
                    let cost = fixed.map_or(f64::NAN, |b| b.rps() / f.rps());
                    let p50 = fixed.map_or(f64::NAN, |b| f.q(0.5) / b.q(0.5));
                    let (scpu, ccpu, ocpu) = f.cpu();
                    let _ = writeln!(
                        w,
                        "| {c} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {scpu:.0} / {ccpu:.0} / {ocpu:.0} %{} |",
                        sc.name(),
                        sc.descriptors(),
                        st.short(),
                        fmt_int(f.rps()),
                        fmt_us(f.q(0.5)),
                        fmt_us(f.q(0.95)),
                        fmt_us(f.q(0.99)),
                        fmt_ratio(cost),
                        fmt_ratio(p50),
                        if f.disturbed > 0 {
                            format!(" ({} run(s) disturbed by other load)", f.disturbed)
                        } else {
                            String::new()
                        }
                    );
                    if !f.invalid.is_empty() {
                        let _ = writeln!(w, "| | INVALID: {} | | | | | | | | |", f.invalid[0]);
                    }
                }
            }
        }
        let _ = writeln!(w);
    }

    // Sizing, from this run's numbers.
    let deep = cfg.pipelines.iter().copied().max().unwrap_or(16);
    let get = |id: &str, d: usize| res.single.get(&(spec(id).id, d)).map(Figure::rps);
    if let (Some(h), Some(r)) = (get("shield_hot", deep), get("shield_rand", deep)) {
        let _ = writeln!(w, "## Sizing (from this run)\n");
        let _ = writeln!(
            w,
            "- One server core (Redis/Valkey runs commands on one thread) answered **{} admitted calls/s** on a hot \
             bucket and **{}/s** over 100k buckets with pipelines of {deep}{}.",
            fmt_int(h),
            fmt_int(r),
            match (get("shield_hot", 1), get("shield_rand", 1)) {
                (Some(a), Some(b)) if deep != 1 => format!(
                    ", and {}/s and {}/s without pipelining ({} connections, one request in flight each)",
                    fmt_int(a),
                    fmt_int(b),
                    cfg.conns
                ),
                _ => String::new(),
            }
        );
        if let Some(d) = get("shield_denied", deep) {
            let _ = writeln!(
                w,
                "- Denied calls (the abuse case): **{}/s** with pipelines of {deep}, {} admitted calls on a hot bucket.",
                fmt_int(d),
                if d > h { "more than" } else { "no more than" }
            );
        }
        if let Some(m) = res.memory.iter().find(|m| m.label.starts_with("SHIELD")) {
            let b = median(m.per_key.clone());
            let _ = writeln!(
                w,
                "- A bucket that is not full costs **{b:.0} bytes**: **{:.0} MB per million** active buckets; a full (idle) bucket has expired and costs nothing.",
                b
            );
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "![Ratios](ratios.png)\n");
    m
}

fn chart(cfg: &Config, res: &Results) -> Vec<u8> {
    use chart::{Bar, Panel, Row};
    let mut panels = Vec::new();
    let depths: Vec<usize> = cfg.pipelines.clone();
    if !res.single.is_empty() {
        let mut rows = Vec::new();
        for s in SPECS {
            let mut bars = Vec::new();
            for (i, &d) in depths.iter().enumerate() {
                let incr = res.single.get(&("incr", d)).map_or(f64::NAN, Figure::rps);
                if let Some(f) = res.single.get(&(s.id, d)) {
                    let v = f.rps() / incr;
                    bars.push(Bar {
                        value: v,
                        color: if i == 0 { chart::DARK } else { chart::LIGHT },
                        label: format!("{} P{d}", fmt_ratio(v)),
                    });
                }
            }
            if !bars.is_empty() {
                rows.push(Row {
                    label: s.id.replace('_', " "),
                    bars,
                    target: None,
                });
            }
        }
        panels.push(Panel {
            title: "SINGLE NODE: THROUGHPUT RELATIVE TO INCR, SAME RUN".into(),
            subtitle: depths
                .iter()
                .enumerate()
                .map(|(i, d)| format!("{} = PIPELINE {d}", if i == 0 { "DARK" } else { "LIGHT" }))
                .collect::<Vec<_>>()
                .join(", "),
            reference: Some((1.0, "INCR".into())),
            rows,
        });
    }
    let t = targets(cfg, res);
    if !t.is_empty() {
        let rows = t
            .iter()
            .map(|t| {
                // Show every target as "higher is better".
                let (v, target) = if t.at_least {
                    (t.ratio, t.limit)
                } else {
                    (1.0 / t.ratio, 1.0 / t.limit)
                };
                let label = t
                    .what
                    .replace("admitted, ", "")
                    .replace("throughput, pipeline", "THR P")
                    .replace("latency, no pipelining", "P1")
                    .replace(", slot-grouped pipelines, ", " ")
                    .replace(" client(s)", " CL")
                    .replace("cluster mixed_10keys", "CLUSTER 10 KEYS")
                    .replace("100k random keys", "RANDOM KEYS")
                    .replace("one hot key", "HOT KEY")
                    .replace(" (drained bucket)", "")
                    .replace(':', "");
                Row {
                    label,
                    bars: vec![Bar {
                        value: v,
                        color: match t.pass() {
                            Some(true) => chart::GREEN,
                            Some(false) => chart::ORANGE,
                            None => chart::GREY,
                        },
                        label: format!("{} {}", fmt_ratio(v), t.verdict()),
                    }],
                    target: Some(target),
                }
            })
            .collect();
        panels.push(Panel {
            title: "TARGETS: SHIELD VS ITS YARDSTICK, HIGHER IS BETTER".into(),
            subtitle:
                "THROUGHPUT: SHIELD/YARDSTICK. LATENCY, MEMORY: YARDSTICK/SHIELD. RED = LIMIT"
                    .into(),
            reference: Some((1.0, "PARITY".into())),
            rows,
        });
    }
    if !res.cluster.is_empty() {
        let mut rows = Vec::new();
        for sc in Scenario::ALL {
            for st in Strategy::ALL {
                let mut bars = Vec::new();
                for (i, &c) in cfg.cluster_clients.iter().enumerate() {
                    let (Some(f), Some(b)) = (
                        res.cluster.get(&(sc, st, c)),
                        res.cluster.get(&(Scenario::FixedKey, st, c)),
                    ) else {
                        continue;
                    };
                    let v = f.q(0.5) / b.q(0.5);
                    bars.push(Bar {
                        value: v,
                        color: if i == 0 { chart::DARK } else { chart::LIGHT },
                        label: format!("{} C{c}", fmt_ratio(v)),
                    });
                }
                if !bars.is_empty() {
                    rows.push(Row {
                        label: format!("{} {}", sc.name().replace('_', " "), st.short()),
                        bars,
                        target: (sc == Scenario::Mixed10 && st == Strategy::Parallel)
                            .then_some(2.0),
                    });
                }
            }
        }
        panels.push(Panel {
            title: "CLUSTER: P50 LATENCY RELATIVE TO FIXED KEY (LOWER IS BETTER)".into(),
            subtitle: cfg
                .cluster_clients
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = {c} CLIENT(S)", if i == 0 { "DARK" } else { "LIGHT" }))
                .collect::<Vec<_>>()
                .join(", ")
                + ". RED = LIMIT",
            reference: Some((1.0, "FIXED KEY".into())),
            rows,
        });
    }
    chart::render(
        &format!(
            "REDIS-SHIELD BENCHMARK: {} {}",
            res.server_version.0, res.server_version.1
        ),
        &panels,
    )
}

/// Replaces the text between the results markers of BENCHMARKS.md.
fn update_doc(results_md: &str) -> Result<bool, String> {
    const BEGIN: &str = "<!-- BEGIN RESULTS (written by benches/shield_bench.rs) -->";
    const END: &str = "<!-- END RESULTS -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        return Ok(false);
    };
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        return Ok(false);
    };
    // Nest the results under the document's own headings, and point the image at bench-results/.
    let body: String = results_md
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("##{l}")
            } else if l == "![Ratios](ratios.png)" {
                "![Ratios](bench-results/ratios.png)".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let new = format!("{}{BEGIN}\n\n{body}\n\n{}", &doc[..b], &doc[e..]);
    std::fs::write(&path, new).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(true)
}

// ====================================================================== main

fn self_checks() -> bool {
    let mut all = loadgen::self_check();
    all.extend(cluster::self_check());
    all.extend(chart::self_check());
    let mut failed = 0;
    for (name, r) in &all {
        match r {
            Ok(()) => println!("self-check {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("self-check {name} ... FAILED: {e}");
            }
        }
    }
    println!("{} passed, {failed} failed", all.len() - failed);
    failed == 0
}

fn bench(args: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let cfg = Config::from_env(args);
    if !self_checks() {
        return Err("self-checks failed".into());
    }
    if let Some(cpu) = cfg.client_cpu {
        if !set_affinity(0, cpu) {
            return Err(format!("could not pin the load generator to CPU {cpu}"));
        }
    }
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let bin = common::server_binary();
    println!(
        "redis-shield benchmark{}",
        if cfg.quick { " (QUICK mode)" } else { "" }
    );
    println!("  command: {}", cfg.command_line);
    println!("  machine: {}", machine());
    println!("  module:  {}", common::module_path().display());
    match (cfg.server_cpu, cfg.client_cpu) {
        (Some(s), Some(c)) => println!("  pinning: servers on CPU {s}, load generator on CPU {c}"),
        _ => println!("  pinning: none (fewer than 2 CPUs)"),
    }
    let mut res = Results {
        server_desc: String::new(),
        server_version: (String::new(), String::new()),
        single: HashMap::new(),
        unavailable: Vec::new(),
        cross: HashMap::new(),
        cross_note: None,
        memory: Vec::new(),
        memory_note: None,
        cluster: HashMap::new(),
        cluster_note: None,
        cluster_path: None,
        discarded: 0,
    };
    {
        // Version from a running server (Valkey also reports a redis_version).
        let probe = Server::start(ServerOptions::default());
        let mut c = probe.conn();
        res.server_version = common::server_version_info(&mut c);
        res.server_desc = format!(
            "{} {} (`{}`)",
            if res.server_version.0 == "valkey" {
                "Valkey"
            } else {
                "Redis"
            },
            res.server_version.1,
            bin.display()
        );
    }
    println!("  server:  {}", res.server_desc);

    if cfg.section("single") || cfg.section("memory") {
        run_single(&cfg, &mut res)?;
    }
    if !cfg.section("memory") {
        res.memory_note = Some("not run (`SHIELD_BENCH_ONLY` excluded it)".into());
    }
    if cfg.section("cluster") {
        if let Err(e) = run_cluster(&cfg, &mut res) {
            println!("  cluster: NOT RUN: {e}");
            res.cluster_note = Some(format!("Not run: {e}"));
        }
    } else {
        res.cluster_note = Some("Not run (`SHIELD_BENCH_ONLY` excluded it).".into());
    }

    let md = markdown(&cfg, &res, started.elapsed(), &date);
    let png = chart(&cfg, &res);
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| e.to_string())?;
    let md_path = cfg.out_dir.join("latest.md");
    let png_path = cfg.out_dir.join("ratios.png");
    std::fs::write(&md_path, &md).map_err(|e| e.to_string())?;
    std::fs::write(&png_path, &png).map_err(|e| e.to_string())?;
    println!("\n{md}");
    println!("wrote {} and {}", md_path.display(), png_path.display());
    if cfg.update_doc && update_doc(&md)? {
        println!("updated the results section of BENCHMARKS.md");
    }
    println!("total time: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`)
    // only runs the self-checks, without servers.
    if !args.iter().any(|a| a == "--bench") {
        let ok = self_checks();
        std::process::exit(if ok { 0 } else { 1 });
    }
    let code = match bench(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shield_bench: {e}");
            1
        }
    };
    std::process::exit(code);
}
