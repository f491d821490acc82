//! The report: the targets, the markdown of `bench-results/latest.md` and
//! of the BENCHMARKS.md results section, and the ratios chart.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::chart::{self, Bar};
use crate::cluster::{Scenario, Strategy};
use crate::compat;
use crate::config::Config;
use crate::loadgen::RunResult;
use crate::results::MemFigure;
use crate::results::{median, Figure, Results};
use crate::system::{machine, sh};
use crate::workloads::{spec, Expect, Spec, Srv, CROSS_CHECK, SPECS};

pub fn fmt_int(v: f64) -> String {
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

pub fn fmt_us(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

pub fn fmt_ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

/// The cells of a single-node table row after the workload's label: req/s,
/// spread, `× INCR` (relative to `incr`, the same server's `INCR hot`),
/// p50, p99, p99.9, CPU, and the reply check.
pub fn figure_cells(s: &Spec, f: &Figure, incr: f64) -> String {
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
    format!(
        "{} | {}–{} | {} | {} | {} | {} | {scpu:.0} / {ccpu:.0} / {ocpu:.0} % | {}",
        fmt_int(f.rps()),
        fmt_int(lo),
        fmt_int(hi),
        fmt_ratio(f.rps() / incr),
        fmt_us(f.q(0.5)),
        fmt_us(f.q(0.99)),
        fmt_us(f.q(0.999)),
        check
    )
}

pub struct Target {
    pub what: String,
    pub measured: String,
    pub yardstick: String,
    pub ratio: f64,
    pub limit: f64,
    /// true: ratio must be >= limit; false: <= limit.
    pub at_least: bool,
    pub valid: bool,
}

impl Target {
    pub fn pass(&self) -> Option<bool> {
        if !self.valid || !self.ratio.is_finite() {
            return None;
        }
        Some(if self.at_least {
            self.ratio >= self.limit
        } else {
            self.ratio <= self.limit
        })
    }
    pub fn verdict(&self) -> &'static str {
        match self.pass() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "not measured",
        }
    }
}

/// Throughput `a ÷ b` at pipeline `depth`, at least `limit`.
fn throughput_target(
    what: &str,
    depth: usize,
    (a, b): (&Figure, &Figure),
    yard: &str,
    ratio: f64,
    limit: f64,
) -> Target {
    Target {
        what: format!("{what}: throughput, pipeline {depth}"),
        measured: format!("{} req/s", fmt_int(a.rps())),
        yardstick: format!("{} req/s ({yard})", fmt_int(b.rps())),
        ratio,
        limit,
        at_least: true,
        valid: a.valid() && b.valid(),
    }
}

/// p99 without pipelining, `a ÷ b`, at most `limit`.
fn p99_target(
    what: &str,
    (a, b): (&Figure, &Figure),
    yard: &str,
    ratio: f64,
    limit: f64,
) -> Target {
    Target {
        what: format!("{what}: p99 latency, no pipelining"),
        measured: format!("{} us", fmt_us(a.q(0.99))),
        yardstick: format!("{} us ({yard})", fmt_us(b.q(0.99))),
        ratio,
        limit,
        at_least: false,
        valid: a.valid() && b.valid(),
    }
}

/// Bytes per idle bucket, `a ÷ b`, at most 1.
fn memory_target(what: &str, a: &MemFigure, b: &MemFigure, yard: &str) -> Target {
    let (ma, mb) = (median(a.per_key.clone()), median(b.per_key.clone()));
    Target {
        what: what.into(),
        measured: format!("{ma:.1} bytes"),
        yardstick: format!("{mb:.1} bytes ({yard})"),
        ratio: ma / mb,
        limit: 1.0,
        at_least: false,
        valid: a.invalid.is_empty() && b.invalid.is_empty(),
    }
}

pub fn targets(cfg: &Config, res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let fig = |id: &str, d: usize| res.single.get(&(spec(id).id, d));
    let deep = cfg.pipelines.iter().copied().max().unwrap_or(16);
    // Against the native SET/GET of the same server (ratios of medians).
    for (id, yard, what, p99) in [
        ("shield_hot", "set_hot", "admitted, one hot key", true),
        (
            "shield_rand",
            "set_rand",
            "admitted, 100k random keys",
            true,
        ),
        ("shield_denied", "get", "denied (drained bucket)", false),
    ] {
        let label = spec(yard).label;
        if let (Some(a), Some(b)) = (fig(id, deep), fig(yard, deep)) {
            let ratio = a.rps() / b.rps();
            t.push(throughput_target(what, deep, (a, b), label, ratio, 0.9));
        }
        if let (true, Some(a), Some(b)) = (p99, fig(id, 1), fig(yard, 1)) {
            let ratio = a.q(0.99) / b.q(0.99);
            t.push(p99_target(what, (a, b), label, ratio, 1.1));
        }
    }
    if let (Some(a), Some(b)) = (res.mem("shield"), res.mem("set")) {
        t.push(memory_target(
            "memory per idle bucket",
            a,
            b,
            "SET k <16-digit int> PX",
        ));
    }
    // Against Redis's own GCRA, same server binary (issue #13's targets),
    // paired by round.
    let native = "native GCRA, same server";
    for (ours, reference, what) in [
        (
            "ng_shield_hot",
            "ng_gcra_hot",
            "vs native GCRA, admitted, one hot key",
        ),
        (
            "ng_shield_rand",
            "ng_gcra_rand",
            "vs native GCRA, admitted, 100k random keys",
        ),
        (
            "ng_shield_denied",
            "ng_gcra_denied",
            "vs native GCRA, denied (drained bucket)",
        ),
    ] {
        if let (Some(a), Some(b)) = (fig(ours, deep), fig(reference, deep)) {
            let ratio = a.paired_ratio(b, RunResult::rps);
            t.push(throughput_target(what, deep, (a, b), native, ratio, 0.95));
        }
        if let (Some(a), Some(b)) = (fig(ours, 1), fig(reference, 1)) {
            let ratio = a.paired_ratio(b, |r| r.hist.quantile_us(0.99));
            t.push(p99_target(what, (a, b), native, ratio, 1.05));
        }
    }
    if let (Some(a), Some(b)) = (res.mem("ng_shield"), res.mem("ng_gcra")) {
        t.push(memory_target(
            "vs native GCRA: memory per idle bucket (structural: see Instructions per call)",
            a,
            b,
            "native GCRA key",
        ));
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

pub fn markdown(cfg: &Config, res: &Results, elapsed: Duration, date: &str) -> String {
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
         up to {} times{}: {} run(s) discarded in this run{} |",
        cfg.max_other_cpu,
        cfg.retries,
        if cfg.quiet_wait.is_zero() {
            String::new()
        } else {
            format!(
                ", each retry after waiting (at most {:.0} s) until the pinned cores have been \
                 quiet for 0.5 s",
                cfg.quiet_wait.as_secs_f64()
            )
        },
        res.quiet.discarded,
        if cfg.quiet_wait.is_zero() {
            String::new()
        } else {
            format!(", {:.0} s spent waiting", res.quiet.waited)
        }
    );
    let _ = writeln!(w, "| method | closed loop; {} |\n", cfg.describe_load());

    let targets = targets(cfg, res);
    if !targets.is_empty() {
        let _ = writeln!(w, "## Targets\n");
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
            for s in SPECS.iter().filter(|s| !s.compat_only()) {
                let Some(f) = res.single.get(&(s.id, depth)) else {
                    continue;
                };
                let _ = writeln!(w, "| {} | {} |", s.label, figure_cells(s, f, incr));
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
                "Not run (command not available on its server): {}.\n",
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

    library_markdown(cfg, res, w);

    let main_mem: Vec<&MemFigure> = res
        .memory
        .iter()
        .filter(|m| m.server == Srv::Main && !["cl", "gcra"].contains(&m.id))
        .collect();
    if !main_mem.is_empty() {
        let _ = writeln!(
            w,
            "## Memory per bucket\n\n`used_memory` growth over {} keys (`k:0000000`…), after `FLUSHALL`, once the \
             dict rehash has settled; divided by the number of keys. Includes the keyspace and expires \
             dict entries. `MEMORY USAGE` is one key's own estimate.\n",
            fmt_int(cfg.memory_buckets as f64)
        );
        let set = res
            .mem("set")
            .map_or(f64::NAN, |m| median(m.per_key.clone()));
        let _ = writeln!(
            w,
            "| what | bytes per key | × SET PX | MEMORY USAGE |\n|---|---:|---:|---:|"
        );
        for mf in main_mem {
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

    compat::markdown(cfg, res, w);

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
        if let Some(m) = res.mem("shield") {
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

/// The Functions library beside the module and the Lua token bucket, same
/// server, same run: throughput and p99 ratios per workload and depth.
fn library_markdown(cfg: &Config, res: &Results, w: &mut String) {
    let rows = [
        ("admitted, one hot key", "lib_hot", "shield_hot", "lua_hot"),
        (
            "admitted, 100k random keys",
            "lib_rand",
            "shield_rand",
            "lua_rand",
        ),
        (
            "denied (drained bucket)",
            "lib_denied",
            "shield_denied",
            "lua_denied",
        ),
    ];
    let get = |id: &str, d: usize| res.single.get(&(spec(id).id, d));
    if !rows
        .iter()
        .any(|r| cfg.pipelines.iter().any(|&d| get(r.1, d).is_some()))
    {
        return;
    }
    let _ = writeln!(
        w,
        "### The Functions library beside the module and the Lua bucket\n\n\
         `FCALL shield_absorb` (`functions/shield.lua`, loaded beside the module on the same server) against \
         `SHIELD.absorb` and the hand-rolled Lua token bucket (`EVALSHA`), from the tables above. The library's \
         range (capacity × period ≤ 8·10^12) excludes the SHIELD buckets' numbers, so it runs in-range \
         buckets of the same shape (see `benches/shield_bench/workloads.rs`); all store `~0`. Below 1: the \
         library is slower (throughput) or faster (p99).\n"
    );
    let _ = writeln!(
        w,
        "| workload | pipeline | library req/s | ÷ SHIELD.absorb | ÷ Lua bucket | library p99 µs | p99 ÷ SHIELD.absorb | p99 ÷ Lua |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &depth in &cfg.pipelines {
        for (what, lib, module, lua) in rows {
            let Some(l) = get(lib, depth) else {
                continue;
            };
            let ratio = |other: Option<&Figure>, f: &dyn Fn(&Figure) -> f64| {
                other.map_or("-".to_string(), |o| fmt_ratio(f(l) / f(o)))
            };
            let rps = |f: &Figure| f.rps();
            let p99 = |f: &Figure| f.q(0.99);
            let _ = writeln!(
                w,
                "| {what}{} | {depth} | {} | {} | {} | {} | {} | {} |",
                if l.valid() { "" } else { " (INVALID)" },
                fmt_int(l.rps()),
                ratio(get(module, depth), &rps),
                ratio(get(lua, depth), &rps),
                fmt_us(l.q(0.99)),
                ratio(get(module, depth), &p99),
                ratio(get(lua, depth), &p99),
            );
        }
    }
    let _ = writeln!(w);
}

/// A bar of the `i`-th series (dark, then light) of a chart row: the ratio
/// `v`, labelled with it and `series`.
fn series_bar(i: usize, v: f64, series: &str) -> Bar {
    Bar {
        value: v,
        color: if i == 0 { chart::DARK } else { chart::LIGHT },
        label: format!("{} {series}", fmt_ratio(v)),
    }
}

pub fn chart(cfg: &Config, res: &Results) -> Vec<u8> {
    use chart::{Panel, Row};
    let mut panels = Vec::new();
    let depths: Vec<usize> = cfg.pipelines.clone();
    if !res.single.is_empty() {
        let mut rows = Vec::new();
        for s in SPECS.iter().filter(|s| !s.compat_only()) {
            let mut bars = Vec::new();
            for (i, &d) in depths.iter().enumerate() {
                let incr = res.single.get(&("incr", d)).map_or(f64::NAN, Figure::rps);
                if let Some(f) = res.single.get(&(s.id, d)) {
                    bars.push(series_bar(i, f.rps() / incr, &format!("P{d}")));
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
    panels.extend(compat::chart_panel(cfg, res));
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
                    bars.push(series_bar(i, f.q(0.5) / b.q(0.5), &format!("C{c}")));
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

/// Replaces the results section of BENCHMARKS.md (see [`with_results`]);
/// `Ok(false)` when there is no such file or section.
pub fn update_doc(results_md: &str) -> Result<bool, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        return Ok(false);
    };
    let Some(new) = with_results(&doc, results_md) else {
        return Ok(false);
    };
    std::fs::write(&path, new).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(true)
}

/// `doc` with the text between its results markers replaced by the report
/// `results_md`: the markers are the line `<!-- BEGIN RESULTS ... -->` (kept
/// as the document has it) and `<!-- END RESULTS -->`. The report's headings
/// are nested under the document's, and its image is pointed at
/// bench-results/.
pub fn with_results(doc: &str, results_md: &str) -> Option<String> {
    const BEGIN: &str = "<!-- BEGIN RESULTS";
    const END: &str = "<!-- END RESULTS -->";
    let b = doc.find(BEGIN)?;
    let b = b + doc.get(b..)?.find("-->")? + "-->".len();
    let e = doc.find(END).filter(|&e| e >= b)?;
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
    Some(format!("{}\n\n{body}\n\n{}", doc.get(..b)?, doc.get(e..)?))
}

pub fn self_check() -> Vec<(&'static str, Result<(), String>)> {
    let doc = "# Doc\n<!-- BEGIN RESULTS (written by the benchmark) -->\nold\n<!-- END RESULTS -->\ntail\n";
    let got = with_results(doc, "# Results\n![Ratios](ratios.png)");
    let want = "# Doc\n<!-- BEGIN RESULTS (written by the benchmark) -->\n\n### Results\n\
                ![Ratios](bench-results/ratios.png)\n\n<!-- END RESULTS -->\ntail\n";
    let unmarked = with_results("# Doc\n", "# Results");
    let figure = |rps: &[u64]| Figure {
        runs: rps
            .iter()
            .map(|&requests| RunResult {
                requests,
                secs: 1.0,
                ..RunResult::default()
            })
            .collect(),
        ..Figure::default()
    };
    // Rounds 2 and 3 both 2x; the medians alone say 1x.
    let paired = figure(&[100, 200, 100]).paired_ratio(&figure(&[100, 100, 50]), RunResult::rps);
    let unpaired = figure(&[100, 300]).paired_ratio(&figure(&[100, 100, 50]), RunResult::rps);
    vec![
        (
            "results: ratios paired by round (median of the rounds' ratios)",
            if paired == 2.0 && unpaired == 2.0 {
                Ok(())
            } else {
                Err(format!("paired {paired}, unpaired fallback {unpaired}"))
            },
        ),
        (
            "report: BENCHMARKS.md results section replaced between its markers",
            if got.as_deref() == Some(want) && unmarked.is_none() {
                Ok(())
            } else {
                Err(format!("got {got:?}, unmarked {unmarked:?}"))
            },
        ),
    ]
}
