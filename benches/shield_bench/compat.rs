//! The compatibility commands against the implementations they follow:
//! our `CL.THROTTLE` against redis-cell 0.5.0 (two servers of one Redis 7.0
//! binary: the two cannot share a server), and `SHIELD.absorb` against the
//! native `GCRA` in one server (the Redis build that has it, with this module
//! loaded), with our `GCRA` against `SHIELD.absorb` on the main server.
//!
//! The reference implementations ("anchors") are third-party code built from
//! the sources beside the repository (`../shared/anchors/build-anchors.sh`),
//! never copied into it. They are found through `SHIELD_REDIS_CELL`,
//! `SHIELD_GCRA_SERVER` and `SHIELD_REDIS7_BIN` (the Redis 7.0 that
//! redis-cell targets; default `/usr/bin/redis-server`), else where
//! `build-anchors.sh` puts them, `~/.cache/redis-shield-anchors/`. A missing
//! one fails the run with the command that builds it.
//!
//! Here: finding and starting the reference servers, checking whose command
//! each server runs, checking the replies of every compatibility workload
//! before it is timed (shape, admitted or denied, and the same replies as the
//! reference), and the ratios of the report and the chart.

use std::fmt::Write as _;
use std::path::Path;

use redis::Value;
use shield_testkit::{anchors, server_version_info, Server, ServerOptions};

use crate::chart::{self, Bar, Panel, Row};
use crate::config::Config;
use crate::loadgen::RunResult;
use crate::report::fmt_ratio;
use crate::results::{median, Figure, Results, ServerDesc};
use crate::single::Servers;
use crate::workloads::{
    spec, Expect, Family, Spec, Srv, CL_DENIED, CL_HOT, CL_RAND, GCRA_DENIED, GCRA_HOT, GCRA_RAND,
    KEY, SHIELD_DENIED, SHIELD_HOT, SHIELD_RAND, SPECS,
};

// ---------------------------------------------------------------- anchors

/// A missing anchor: what is missing, and how to build it or do without.
fn missing(what: String) -> String {
    format!(
        "{what} The compatibility section needs it; build the reference implementations \
         with:\n    {}\n(or leave the section out: SHIELD_BENCH_ONLY=single,memory,cluster)",
        anchors::build_command()
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Starts redis-cell's server (Redis 7.0, redis-cell, not this module) and
/// the native-GCRA server (with this module).
pub fn start_reference_servers() -> Result<(Server, Server), String> {
    let cell_so = anchors::find_redis_cell_module().map_err(missing)?;
    let gcra_bin = anchors::find_gcra_server().map_err(missing)?;
    let r7 = anchors::find_redis7_binary()?;
    let cell = Server::start(
        ServerOptions::default()
            .without_module()
            .binary(r7)
            .arg("--loadmodule")
            .arg(cell_so.display().to_string()),
    );
    let native = Server::start(ServerOptions::default().binary(gcra_bin));
    Ok((cell, native))
}

// ---------------------------------------------------------------- whose command

/// Who serves a command, from `COMMAND DOCS <name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Missing,
    /// The server's own command.
    Native,
    /// A module's command (the module's name).
    Module(String),
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Reads the reply of `COMMAND DOCS <name>`: RESP2 `[name, [field, value,
/// ...]]` or RESP3 `{name: {field: value}}`; a module's command has a
/// `module` field.
pub fn command_origin(docs: &Value) -> Origin {
    let doc = match docs {
        Value::Array(items) => items.get(1),
        Value::Map(entries) => entries.first().map(|(_, v)| v),
        _ => None,
    };
    let fields: Vec<(&Value, &Value)> = match doc {
        Some(Value::Array(kv)) => kv
            .chunks(2)
            .filter_map(|c| Some((c.first()?, c.get(1)?)))
            .collect(),
        Some(Value::Map(m)) => m.iter().map(|(k, v)| (k, v)).collect(),
        _ => return Origin::Missing,
    };
    fields
        .iter()
        .find(|(k, _)| text(k).as_deref() == Some("module"))
        .map_or(Origin::Native, |(_, v)| {
            Origin::Module(text(v).unwrap_or_default())
        })
}

fn origin_of(c: &mut redis::Connection, name: &str) -> Origin {
    redis::cmd("COMMAND")
        .arg("DOCS")
        .arg(name)
        .query::<Value>(c)
        .map_or(Origin::Missing, |v| command_origin(&v))
}

/// Whose `CL.THROTTLE`, `GCRA` and `SHIELD.absorb` each server must run
/// (server, command as `COMMAND DOCS` takes it, as the report shows it, the
/// module's name or `""` for the server's own).
const EXPECTED: &[(Srv, &str, &str, &str)] = &[
    (Srv::Main, "cl.throttle", "CL.THROTTLE", "shield"),
    (Srv::Main, "gcra", "GCRA", "shield"),
    (Srv::Main, "shield.absorb", "SHIELD.absorb", "shield"),
    (Srv::Cell, "cl.throttle", "CL.THROTTLE", "redis-cell"),
    (Srv::NativeGcra, "gcra", "GCRA", ""),
    (Srv::NativeGcra, "shield.absorb", "SHIELD.absorb", "shield"),
];

/// Checks that each server runs the command of the implementation it stands
/// for (a `GCRA` on the main server that is the server's own, or a
/// `CL.THROTTLE` that is not redis-cell's, would make the comparison
/// meaningless), and describes the servers.
pub fn check_servers(servers: &Servers, res: &mut Results) -> Result<(), String> {
    for srv in Srv::ALL {
        let Some(s) = servers.get(srv) else { continue };
        let mut c = s.conn();
        let mut whose = Vec::new();
        for &(_, name, shown, want) in EXPECTED.iter().filter(|e| e.0 == srv) {
            let got = origin_of(&mut c, name);
            let ok = match (&got, want) {
                (Origin::Native, "") => true,
                (Origin::Module(m), w) => m == w,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "the {} server ({}) runs {shown} as {got:?}; this comparison needs {}",
                    srv.name(),
                    s.options().server_binary().display(),
                    if want.is_empty() {
                        "the server's own".to_string()
                    } else {
                        format!("the {want} module's")
                    }
                ));
            }
            whose.push(format!(
                "`{shown}`: {}",
                if want.is_empty() { "native" } else { want }
            ));
        }
        let (flavor, version) = server_version_info(&mut c);
        res.servers.push(ServerDesc {
            srv,
            binary: s.options().server_binary(),
            version: format!(
                "{} {}",
                if flavor == "valkey" {
                    "Valkey"
                } else {
                    "Redis"
                },
                // Redis's unstable branch calls itself 255.255.255.
                if version == "255.255.255" {
                    "unstable (255.255.255)".to_string()
                } else {
                    version
                }
            ),
            loaded: whose.join(", "),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- replies

/// The integers of a reply (an integer, or an array of integers).
fn ints(v: &Value) -> Result<Vec<i64>, String> {
    match v {
        Value::Int(n) => Ok(vec![*n]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => Ok(*n),
                other => Err(format!("{other:?} in {v:?}")),
            })
            .collect(),
        other => Err(format!("{other:?}")),
    }
}

/// Checks the replies of calls of `CL.THROTTLE`/`GCRA` with arguments `args`
/// (`[name, key, max_burst, ...]`): five integers each, `[0, max_burst + 1,
/// remaining <= max_burst, -1, reset >= 0]` when admitted, `[1, max_burst +
/// 1, 0, retry >= 1, reset >= retry]` when limited; `admitted[i]` says which
/// call `i` must be.
pub fn check_throttle_replies(
    args: &[&str],
    replies: &[Vec<i64>],
    admitted: &[bool],
) -> Result<(), String> {
    let burst: i64 = args
        .get(2)
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| format!("no max_burst in {args:?}"))?;
    if replies.len() != admitted.len() {
        return Err(format!(
            "{} replies for {} calls",
            replies.len(),
            admitted.len()
        ));
    }
    for (i, (r, &adm)) in replies.iter().zip(admitted).enumerate() {
        let ok = match *r.as_slice() {
            [0, limit, remaining, -1, reset] => {
                adm && limit == burst + 1 && (0..=burst).contains(&remaining) && reset >= 0
            }
            [1, limit, 0, retry, reset] => {
                !adm && limit == burst + 1 && retry >= 1 && reset >= retry
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "call {}: {r:?} is not {} reply of {}",
                i + 1,
                if adm { "an admitted" } else { "a limited" },
                args.join(" ")
            ));
        }
    }
    Ok(())
}

/// `GCRA k C-1 C P` and `SHIELD.absorb k C P` are one bucket: the
/// `SHIELD.absorb` reply is `GCRA`'s `available` when admitted, `-1` when limited.
pub fn check_same_bucket(shield: &[Vec<i64>], gcra: &[Vec<i64>]) -> Result<(), String> {
    let want: Vec<Vec<i64>> = gcra
        .iter()
        .map(|g| match g.as_slice() {
            [0, _, available, ..] => vec![*available],
            _ => vec![-1],
        })
        .collect();
    if shield == want {
        Ok(())
    } else {
        Err(format!(
            "SHIELD.absorb replied {shield:?} where GCRA's replies {gcra:?} mean {want:?}"
        ))
    }
}

/// Whether `gcra` (`GCRA key C-1 C P`) is the bucket of `shield`
/// (`SHIELD.absorb key C P`).
pub fn gcra_matches_shield(gcra: &[&str], shield: &[&str]) -> bool {
    let n = |v: &[&str], i: usize| v.get(i).and_then(|x| x.parse::<u64>().ok());
    matches!(
        (n(gcra, 2), n(gcra, 3), n(gcra, 4), n(shield, 2), n(shield, 3)),
        (Some(b), Some(t), Some(p), Some(c), Some(q)) if b + 1 == c && t == c && p == q
    )
}

/// Calls of each probe: two, on a new key (the drained workloads: admitted, then limited).
fn admitted_calls(expect: Expect) -> [bool; 2] {
    match expect {
        Expect::Denied => [true, false],
        _ => [true, true],
    }
}

/// The replies of two calls of the spec's command on a new key.
fn probe(servers: &Servers, s: &Spec) -> Result<Vec<Vec<i64>>, String> {
    let server = servers
        .get(s.server)
        .ok_or_else(|| format!("{}: no {} server", s.id, s.server.name()))?;
    let mut c = server.conn();
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut c)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for _ in 0..2 {
        let mut cmd = redis::cmd(s.cmds[0][0]);
        for a in &s.cmds[0][1..] {
            cmd.arg(if *a == KEY { "probe" } else { a });
        }
        let v: Value = cmd.query(&mut c).map_err(|e| format!("{}: {e}", s.id))?;
        out.push(ints(&v).map_err(|e| format!("{}: not integers: {e}", s.id))?);
    }
    Ok(out)
}

fn args_text(s: &Spec) -> String {
    s.cmds[0]
        .iter()
        .map(|a| if *a == KEY { "<key>" } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Before timing: each compatibility workload's first two replies on a new
/// key are checked (shape; admitted or limited), ours against the
/// reference's (identical), and each `SHIELD.absorb` against the `GCRA` of
/// the same bucket on the same server. A mismatch is reported, not fatal
/// (the timed runs check admitted/denied on every reply).
pub fn check_replies(servers: &Servers, res: &mut Results) -> Result<(), String> {
    let have = |id: &str| !res.unavailable.contains(&spec(id).id);
    let mut out = Vec::new();
    let mut replies = std::collections::HashMap::new();
    for s in SPECS
        .iter()
        .filter(|s| s.compat_only() && s.deny == crate::loadgen::DenyCheck::Throttle && have(s.id))
    {
        let r = probe(servers, s)?;
        out.push((
            format!(
                "`{}` ({}, {} server): {r:?}",
                args_text(s),
                family_name(s.family),
                s.server.name()
            ),
            check_throttle_replies(s.cmds[0], &r, &admitted_calls(s.expect)),
        ));
        replies.insert(s.id, r);
    }
    for (ours, reference) in [
        ("cl_hot", "cell_hot"),
        ("cl_rand", "cell_rand"),
        ("cl_denied", "cell_denied"),
        ("gcra_hot", "ng_gcra_hot"),
        ("gcra_rand", "ng_gcra_rand"),
        ("gcra_denied", "ng_gcra_denied"),
    ] {
        if let (Some(a), Some(b)) = (replies.get(ours), replies.get(reference)) {
            out.push((
                format!(
                    "`{}`: {} and {} reply the same",
                    args_text(spec(ours)),
                    family_name(spec(ours).family),
                    family_name(spec(reference).family)
                ),
                if a == b {
                    Ok(())
                } else {
                    Err(format!("ours {a:?}, reference {b:?}"))
                },
            ));
        }
    }
    for (shield, gcra) in [
        ("ng_shield_hot", "ng_gcra_hot"),
        ("ng_shield_rand", "ng_gcra_rand"),
        ("ng_shield_denied", "ng_gcra_denied"),
        ("shield_hot", "gcra_hot"),
        ("shield_rand", "gcra_rand"),
        ("shield_denied", "gcra_denied"),
    ] {
        let (s, g) = (spec(shield), spec(gcra));
        if !have(shield) || !have(gcra) {
            continue;
        }
        let Some(gr) = replies.get(gcra) else {
            continue;
        };
        let sr = probe(servers, s)?;
        out.push((
            format!(
                "`{}` and `{}` ({}, {} server): one bucket, {sr:?}",
                args_text(s),
                args_text(g),
                family_name(g.family),
                g.server.name()
            ),
            check_same_bucket(&sr, gr),
        ));
    }
    for (what, r) in &out {
        println!(
            "  reply check: {what}: {}",
            match r {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("MISMATCH: {e}"),
            }
        );
    }
    res.reply_checks = out;
    Ok(())
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Throttle | Family::Gcra => "ours",
        Family::Cell => "redis-cell",
        Family::NativeGcra => "native",
        Family::Shield => "SHIELD.absorb",
        _ => "",
    }
}

// ---------------------------------------------------------------- ratios

/// One row of the ratio table: numerator ÷ denominator, for the hot, random
/// and drained workloads (`None`: no such workload), and bytes per idle bucket.
pub struct Comparison {
    pub what: &'static str,
    /// Where the two sides run.
    pub servers: &'static str,
    pub ours: [Option<&'static str>; 3],
    pub reference: [Option<&'static str>; 3],
    /// `memory::MEM_KINDS` ids.
    pub mem: Option<(&'static str, &'static str)>,
    /// Row label in the chart (at most 22 characters: the workload follows).
    pub chart: &'static str,
}

#[rustfmt::skip]
pub const COMPARISONS: &[Comparison] = &[
    Comparison { what: "`CL.THROTTLE`: ours ÷ redis-cell", servers: "main ÷ redis-cell (two servers, one binary)", ours: [Some("cl_hot"), Some("cl_rand"), Some("cl_denied")], reference: [Some("cell_hot"), Some("cell_rand"), Some("cell_denied")], mem: Some(("cl", "cell")), chart: "CL OURS/REDIS-CELL" },
    Comparison { what: "`SHIELD.absorb` ÷ native `GCRA`", servers: "native GCRA (one server)", ours: [Some("ng_shield_hot"), Some("ng_shield_rand"), Some("ng_shield_denied")], reference: [Some("ng_gcra_hot"), Some("ng_gcra_rand"), Some("ng_gcra_denied")], mem: Some(("ng_shield", "ng_gcra")), chart: "ABSORB/NATIVE GCRA" },
    Comparison { what: "our `GCRA` ÷ `SHIELD.absorb`", servers: "main (one server)", ours: [Some("gcra_hot"), Some("gcra_rand"), Some("gcra_denied")], reference: [Some("shield_hot"), Some("shield_rand"), Some("shield_denied")], mem: Some(("gcra", "shield")), chart: "GCRA OURS/ABSORB" },
    Comparison { what: "our `CL.THROTTLE` ÷ `SHIELD.absorb`", servers: "main (one server)", ours: [Some("cl_hot"), Some("cl_rand"), Some("cl_denied")], reference: [Some("shield_hot"), Some("shield_rand"), Some("shield_denied")], mem: Some(("cl", "shield")), chart: "CL OURS/ABSORB" },
    Comparison { what: "control: `INCR hot`, redis-cell's server ÷ main", servers: "redis-cell ÷ main", ours: [Some("cell_incr"), None, None], reference: [Some("incr"), None, None], mem: None, chart: "INCR CELL SRV/MAIN" },
    Comparison { what: "control: `INCR hot`, native-GCRA server ÷ main", servers: "native GCRA ÷ main", ours: [Some("ng_incr"), None, None], reference: [Some("incr"), None, None], mem: None, chart: "INCR NG SRV/MAIN" },
];

const WORKLOADS: [&str; 3] = ["hot", "random", "denied"];

/// `num ÷ den` of a figure's value, or why there is none.
fn ratio_cell(
    num: Option<&Figure>,
    den: Option<&Figure>,
    value: impl Fn(&RunResult) -> f64,
) -> String {
    match (num, den) {
        (Some(a), Some(b)) if a.valid() && b.valid() => format!(
            "{}{}",
            fmt_ratio(a.paired_ratio(b, value)),
            if a.disturbed + b.disturbed > 0 {
                " †"
            } else {
                ""
            }
        ),
        (Some(_), Some(_)) => "INVALID".into(),
        _ => "-".into(),
    }
}

fn mem_cell(res: &Results, ids: Option<(&str, &str)>) -> String {
    let Some((a, b)) = ids else {
        return "".into();
    };
    match (res.mem(a), res.mem(b)) {
        (Some(a), Some(b)) if a.invalid.is_empty() && b.invalid.is_empty() => {
            let (ma, mb) = (median(a.per_key.clone()), median(b.per_key.clone()));
            format!("{ma:.1} ÷ {mb:.1} = **{}**", fmt_ratio(ma / mb))
        }
        (Some(_), Some(_)) => "INVALID".into(),
        _ => "-".into(),
    }
}

/// The compatibility section of the report.
pub fn markdown(cfg: &Config, res: &Results, w: &mut String) {
    let compat_specs: Vec<&Spec> = SPECS.iter().filter(|s| s.compat_only()).collect();
    if !compat_specs.iter().any(|s| {
        cfg.pipelines
            .iter()
            .any(|&d| res.single.contains_key(&(s.id, d)))
    }) && !res
        .memory
        .iter()
        .any(|m| m.server != Srv::Main || m.id == "cl")
    {
        if !cfg.section("compat") {
            let _ = writeln!(
                w,
                "## Compatibility commands: CL.THROTTLE and GCRA\n\nNot run (`SHIELD_BENCH_ONLY` excluded `compat`).\n"
            );
        }
        return;
    }
    let deep = cfg.pipelines.iter().copied().max().unwrap_or(16);
    let fig = |id: Option<&str>, d: usize| id.and_then(|id| res.single.get(&(spec(id).id, d)));
    let _ = writeln!(w, "## Compatibility commands: CL.THROTTLE and GCRA\n");
    let _ = writeln!(
        w,
        "Our `CL.THROTTLE` and redis-cell's cannot share a server (one command name), so they run in \
         two servers of one binary; the native `GCRA` exists only in the Redis build that has it, so \
         `SHIELD.absorb` (the same bucket: `GCRA k C-1 C P` is `SHIELD.absorb k C P`) is measured \
         beside it in that server, and our `GCRA` beside `SHIELD.absorb` on the main server. Every \
         server is pinned to the server core and only one is under load at a time; the runs of all \
         servers are interleaved like the others. The servers:\n"
    );
    let _ = writeln!(
        w,
        "| server | binary | version | commands |\n|---|---|---|---|"
    );
    let main_bin = res.servers.iter().find(|s| s.srv == Srv::Main);
    for s in &res.servers {
        let _ = writeln!(
            w,
            "| {} | `{}` | {} | {} |",
            s.srv.name(),
            s.binary.display(),
            s.version,
            s.loaded
        );
    }
    let cell_bin = res.servers.iter().find(|s| s.srv == Srv::Cell);
    if let (Some(m), Some(c)) = (main_bin, cell_bin) {
        if !same_file(&m.binary, &c.binary) {
            let _ = writeln!(
                w,
                "\n**Not the same binary**: our `CL.THROTTLE` ran on `{}`, redis-cell on `{}`; for the \
                 same-binary comparison run with `SHIELD_SERVER_BIN={}`.",
                m.binary.display(),
                c.binary.display(),
                c.binary.display()
            );
        }
    }
    let p1 = cfg.pipelines.contains(&1);
    let _ = writeln!(
        w,
        "\n### Ratios\n\nEach ratio is the median over the rounds of that round's ratio (the two runs of a \
         round are seconds apart; the machine's speed may drift between rounds). \
         Throughput: the first ÷ the second at pipeline {deep} (above 1: the first \
         answers more calls per second of server CPU). p99: at pipeline 1 (below 1: the first is \
         faster). Bytes per idle bucket: `used_memory` growth per key, as in the memory section \
         (below 1: the first is smaller). Workloads: hot key admitted, 100 000 random keys \
         admitted, drained key denied (below).\n"
    );
    let _ = writeln!(
        w,
        "| comparison | servers | hot P{deep} | random P{deep} | denied P{deep} | {} | bytes per idle bucket |\n|---|---|---:|---:|---:|---:|---:|---:|---:|",
        if p1 {
            "hot p99 P1 | random p99 P1 | denied p99 P1"
        } else {
            "p99 P1 | | "
        }
    );
    let mut any_disturbed = false;
    for c in COMPARISONS {
        let mut cells = Vec::new();
        for i in 0..3 {
            cells.push(ratio_cell(
                fig(c.ours[i], deep),
                fig(c.reference[i], deep),
                RunResult::rps,
            ));
        }
        for i in 0..3 {
            cells.push(if p1 {
                ratio_cell(fig(c.ours[i], 1), fig(c.reference[i], 1), |r| {
                    r.hist.quantile_us(0.99)
                })
            } else {
                "-".into()
            });
        }
        any_disturbed |= cells.iter().any(|c| c.ends_with('†'));
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            c.what,
            c.servers,
            cells.join(" | "),
            mem_cell(res, c.mem)
        );
    }
    let _ = writeln!(w);
    if any_disturbed {
        let _ = writeln!(
            w,
            "†: a run behind one of the two figures was disturbed by other load on the machine \
             (every attempt at it was; the least disturbed one was kept, see the tables below).\n"
        );
    }

    if !res.reply_checks.is_empty() {
        let bad = res.reply_checks.iter().filter(|r| r.1.is_err()).count();
        let _ = writeln!(
            w,
            "### Replies\n\nBefore timing, each workload's command is called twice on a new key \
             (the drained one: admitted, then limited) and its replies checked; during the runs \
             every reply is read (admitted or limited, an array of five integers) and a figure with \
             an error, an unexpected reply, a denial where admission is expected or the reverse \
             is marked INVALID. {}\n",
            if bad == 0 {
                "Every check below passed.".to_string()
            } else {
                format!("**{bad} check(s) below did not pass.**")
            }
        );
        for (what, r) in &res.reply_checks {
            let _ = writeln!(
                w,
                "- {what}: {}",
                match r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("**MISMATCH**: {e}"),
                }
            );
        }
        let _ = writeln!(w);
    }

    for &depth in &cfg.pipelines {
        let title = if depth == 1 {
            "No pipelining".to_string()
        } else {
            format!("Pipelines of {depth}")
        };
        let _ = writeln!(
            w,
            "### {title}\n\n{} connections. `× INCR`: throughput relative to `INCR hot` on the same server at the same depth.\n",
            cfg.conns
        );
        let _ = writeln!(w, "| server | workload | req/s | spread | × INCR | p50 µs | p99 µs | p99.9 µs | CPU % server / loadgen / other | replies |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for srv in Srv::ALL {
            for s in SPECS.iter().filter(|s| {
                s.server == srv
                    && (s.compat_only() || crate::workloads::COMPAT_BASE.contains(&s.id))
            }) {
                let Some(f) = res.single.get(&(s.id, depth)) else {
                    continue;
                };
                let incr = res
                    .single
                    .get(&(srv.incr_id(), depth))
                    .map_or(f64::NAN, Figure::rps);
                let _ = writeln!(
                    w,
                    "| {} | {} | {} |",
                    srv.name(),
                    s.label,
                    crate::report::figure_cells(s, f, incr)
                );
            }
        }
        let _ = writeln!(w);
    }

    let compat_mem: Vec<_> = res
        .memory
        .iter()
        .filter(|m| m.server != Srv::Main || ["cl", "gcra", "shield", "set"].contains(&m.id))
        .collect();
    if !compat_mem.is_empty() {
        let _ = writeln!(
            w,
            "### Bytes per idle bucket\n\n`used_memory` growth over {} keys per kind, as in the memory section. \
             `× SET PX`: relative to `SET k <16-digit int> PX 3600000` on the same server.\n",
            crate::report::fmt_int(cfg.memory_buckets as f64)
        );
        let _ = writeln!(
            w,
            "| server | what | bytes per key | × SET PX | MEMORY USAGE |\n|---|---|---:|---:|---:|"
        );
        for m in compat_mem {
            let set = res
                .memory
                .iter()
                .find(|s| s.server == m.server && s.label.starts_with("SET"))
                .map_or(f64::NAN, |s| median(s.per_key.clone()));
            let b = median(m.per_key.clone());
            let _ = writeln!(
                w,
                "| {} | {}{} | {b:.1} | {} | {} |",
                m.server.name(),
                m.label,
                if m.invalid.is_empty() {
                    String::new()
                } else {
                    format!(" (INVALID: {})", m.invalid[0])
                },
                fmt_ratio(b / set),
                m.usage.map_or("-".into(), |u| u.to_string())
            );
        }
        let _ = writeln!(w);
    }
}

/// The chart panel: throughput ratios of each comparison and workload.
pub fn chart_panel(cfg: &Config, res: &Results) -> Option<Panel> {
    let mut rows = Vec::new();
    for c in COMPARISONS {
        for (i, wl) in WORKLOADS.iter().enumerate() {
            let (Some(a), Some(b)) = (c.ours[i], c.reference[i]) else {
                continue;
            };
            let mut bars = Vec::new();
            for (k, &d) in cfg.pipelines.iter().enumerate() {
                let (Some(fa), Some(fb)) = (res.single.get(&(a, d)), res.single.get(&(b, d)))
                else {
                    continue;
                };
                let v = fa.paired_ratio(fb, RunResult::rps);
                bars.push(Bar {
                    value: v,
                    color: if k == 0 { chart::DARK } else { chart::LIGHT },
                    label: format!(
                        "{} P{d}{}",
                        fmt_ratio(v),
                        if fa.valid() && fb.valid() {
                            ""
                        } else {
                            " INVALID"
                        }
                    ),
                });
            }
            if !bars.is_empty() {
                rows.push(Row {
                    label: if c.ours[1].is_some() {
                        format!("{} {}", c.chart, wl.to_uppercase())
                    } else {
                        c.chart.to_string()
                    },
                    bars,
                    target: None,
                });
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    Some(Panel {
        title: "COMPATIBILITY: THROUGHPUT RATIOS, SAME RUN (HIGHER: THE FIRST IS FASTER)".into(),
        subtitle: cfg
            .pipelines
            .iter()
            .enumerate()
            .map(|(i, d)| format!("{} = PIPELINE {d}", if i == 0 { "DARK" } else { "LIGHT" }))
            .collect::<Vec<_>>()
            .join(", "),
        reference: Some((1.0, "PARITY".into())),
        rows,
    })
}

// ---------------------------------------------------------------- self-checks

pub fn self_check() -> Vec<(&'static str, Result<(), String>)> {
    let mut out = Vec::new();
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());

    // COMMAND DOCS as Redis 7.0 (RESP2) and RESP3 write it.
    let module_doc = Value::Array(vec![
        bulk("cl.throttle"),
        Value::Array(vec![
            bulk("group"),
            bulk("module"),
            bulk("module"),
            bulk("redis-cell"),
        ]),
    ]);
    let native_doc = Value::Array(vec![
        bulk("gcra"),
        Value::Array(vec![
            bulk("summary"),
            bulk("Rate limit"),
            bulk("group"),
            bulk("rate_limit"),
        ]),
    ]);
    let resp3_doc = Value::Map(vec![(
        bulk("gcra"),
        Value::Map(vec![(bulk("module"), Value::SimpleString("shield".into()))]),
    )]);
    let got = [
        command_origin(&module_doc),
        command_origin(&native_doc),
        command_origin(&resp3_doc),
        command_origin(&Value::Array(vec![])),
    ];
    let want = [
        Origin::Module("redis-cell".into()),
        Origin::Native,
        Origin::Module("shield".into()),
        Origin::Missing,
    ];
    out.push((
        "compat: whose command, from COMMAND DOCS",
        check(got == want, format!("{got:?}")),
    ));

    // Reply shapes (from the anchors' README: CL.THROTTLE user123 15 30 60 on
    // a new key replies 0 16 15 -1 2).
    let cl = ["CL.THROTTLE", "user123", "15", "30", "60"];
    let good = check_throttle_replies(
        &cl,
        &[vec![0, 16, 15, -1, 2], vec![1, 16, 0, 1, 3]],
        &[true, false],
    );
    let bad = [
        (vec![vec![0, 16, 15, -1, 2]], vec![false]),
        (vec![vec![0, 15, 15, -1, 2]], vec![true]),
        (vec![vec![0, 16, 16, -1, 2]], vec![true]),
        (vec![vec![0, 16, 15, 3, 2]], vec![true]),
        (vec![vec![1, 16, 0, 0, 2]], vec![false]),
        (vec![vec![0, 16, 15, -1]], vec![true]),
        (vec![vec![15]], vec![true]),
        (vec![], vec![true]),
    ];
    let caught = bad
        .iter()
        .filter(|(r, a)| check_throttle_replies(&cl, r, a).is_err())
        .count();
    out.push((
        "compat: CL.THROTTLE/GCRA replies checked for shape, limit, admitted or limited",
        check(
            good.is_ok() && caught == bad.len(),
            format!("good {good:?}, {caught} of {} bad ones caught", bad.len()),
        ),
    ));

    let same = check_same_bucket(
        &[vec![17], vec![4], vec![-1]],
        &[
            vec![0, 30, 17, -1, 26],
            vec![0, 30, 4, -1, 52],
            vec![1, 30, 4, 4, 52],
        ],
    );
    let differ = check_same_bucket(
        &[vec![17], vec![5]],
        &[vec![0, 30, 17, -1, 26], vec![0, 30, 4, -1, 52]],
    );
    out.push((
        "compat: SHIELD.absorb and GCRA replies of one bucket compared",
        check(
            same.is_ok() && differ.is_err(),
            format!("{same:?} {differ:?}"),
        ),
    ));

    // The workloads: GCRA's are exactly SHIELD's buckets; ours and the
    // reference send the same command; every comparison names known figures
    // of the right servers.
    let buckets = [
        (GCRA_HOT, SHIELD_HOT),
        (GCRA_RAND, SHIELD_RAND),
        (GCRA_DENIED, SHIELD_DENIED),
    ]
    .iter()
    .all(|(g, s)| gcra_matches_shield(g, s))
        && !gcra_matches_shield(GCRA_HOT, SHIELD_RAND);
    let cl_shapes = [CL_HOT, CL_RAND, CL_DENIED]
        .iter()
        .all(|c| c.len() == 5 && c[0] == "CL.THROTTLE");
    out.push((
        "compat: GCRA workloads are the SHIELD.absorb buckets (GCRA k C-1 C P = SHIELD.absorb k C P)",
        check(buckets && cl_shapes, "mismatch".into()),
    ));
    let mut problems = Vec::new();
    for c in COMPARISONS {
        for i in 0..3 {
            match (c.ours[i], c.reference[i]) {
                (Some(a), Some(b)) => {
                    let (sa, sb) = (
                        SPECS.iter().find(|s| s.id == a),
                        SPECS.iter().find(|s| s.id == b),
                    );
                    match (sa, sb) {
                        (Some(sa), Some(sb)) => {
                            if sa.expect != sb.expect || sa.keys != sb.keys {
                                problems.push(format!("{a} vs {b}: different workloads"));
                            }
                            if sa.family == Family::Cell || sb.family == Family::Throttle {
                                problems.push(format!("{a} vs {b}: reversed"));
                            }
                            let same_cmd = sa.cmds == sb.cmds;
                            let want_same =
                                matches!((sa.family, sb.family), (Family::Throttle, Family::Cell));
                            if want_same && !same_cmd {
                                problems.push(format!("{a} vs {b}: different commands"));
                            }
                        }
                        _ => problems.push(format!("unknown spec {a} or {b}")),
                    }
                }
                (None, None) => {}
                _ => problems.push(format!("{}: one side missing", c.what)),
            }
        }
        if let Some((a, b)) = c.mem {
            for id in [a, b] {
                if !crate::memory::MEM_KINDS.iter().any(|k| k.id == id) {
                    problems.push(format!("unknown memory kind {id}"));
                }
            }
        }
        if c.chart.len() > 22 {
            problems.push(format!("chart label {} too long", c.chart));
        }
    }
    let mut ids: Vec<&str> = SPECS.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != SPECS.len() {
        problems.push("duplicate spec ids".into());
    }
    for srv in Srv::ALL {
        if !SPECS
            .iter()
            .any(|s| s.id == srv.incr_id() && s.server == srv)
        {
            problems.push(format!("no INCR on the {} server", srv.name()));
        }
    }
    out.push((
        "compat: comparisons name matching workloads (same keys, same expectation; ours and redis-cell the same command)",
        check(problems.is_empty(), problems.join("; ")),
    ));

    // Section membership.
    let s = |id: &str| spec(id);
    let membership = s("cl_hot").wanted(false, true)
        && !s("cl_hot").wanted(true, false)
        && s("shield_hot").wanted(false, true)
        && s("shield_hot").wanted(true, false)
        && !s("lua_hot").wanted(false, true)
        && s("cell_incr").wanted(false, true)
        && !s("cell_incr").wanted(true, false);
    out.push((
        "compat: which section measures which workload",
        check(membership, "mismatch".into()),
    ));
    out
}
