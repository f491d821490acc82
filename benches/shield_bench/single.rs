//! The single-node section: every workload of the table on its server (the
//! main one; with the `compat` section also redis-cell's and the native
//! GCRA's), runs interleaved; and the cross-check of the load generator with
//! `redis-benchmark`.

use std::process::Command;
use std::time::Instant;

use shield_testkit::functions::library_source;
use shield_testkit::{Server, ServerOptions};

use crate::compat;
use crate::config::Config;
use crate::loadgen::{self, RunSpec};
use crate::memory::run_memory;
use crate::report::fmt_int;
use crate::results::{cpu_and_verdict, quiet_run, Results};
use crate::system::pin_process;
use crate::workloads::{
    addr_of, check_run, command_exists, setup_spec, spec, SingleWorkload, Spec, Srv, CROSS_CHECK,
    KEY, LUA_BUCKET, SPECS,
};

/// The servers of the single-node and memory sections, each pinned to the
/// server core; only one of them is under load at a time.
pub struct Servers {
    pub main: Server,
    /// Redis 7.0 with redis-cell (section `compat`).
    pub cell: Option<Server>,
    /// The build with the native `GCRA`, with this module (section `compat`).
    pub native_gcra: Option<Server>,
}

impl Servers {
    pub fn get(&self, srv: Srv) -> Option<&Server> {
        match srv {
            Srv::Main => Some(&self.main),
            Srv::Cell => self.cell.as_ref(),
            Srv::NativeGcra => self.native_gcra.as_ref(),
        }
    }
}

pub fn run_single(cfg: &Config, res: &mut Results) -> Result<(), String> {
    let compat_on = cfg.section("compat");
    // The anchors first: a missing one fails the run before anything is measured.
    let (cell, native_gcra) = if compat_on {
        let (c, g) = compat::start_reference_servers()?;
        (Some(c), Some(g))
    } else {
        (None, None)
    };
    let servers = Servers {
        main: Server::start(ServerOptions::default()),
        cell,
        native_gcra,
    };
    for srv in Srv::ALL {
        if let Some(pid) = servers.get(srv).and_then(Server::pid) {
            pin_process(pid, cfg.server_cpu);
        }
    }
    if compat_on {
        compat::check_servers(&servers, res)?;
    }
    let server = &servers.main;
    let mut ctl = server.conn();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(LUA_BUCKET)
        .query(&mut ctl)
        .map_err(|e| format!("SCRIPT LOAD: {e}"))?;
    check_lua(&mut ctl, &sha)?;
    load_library(&mut ctl)?;

    let mut conns: Vec<(Srv, redis::Connection)> = Srv::ALL
        .iter()
        .filter_map(|&srv| servers.get(srv).map(|s| (srv, s.conn())))
        .collect();
    let specs: Vec<&'static Spec> = SPECS
        .iter()
        .filter(|s| s.wanted(cfg.section("single"), compat_on))
        .filter(|s| {
            let Some((_, c)) = conns.iter_mut().find(|(srv, _)| *srv == s.server) else {
                return false;
            };
            let ok = s.requires.is_none_or(|cmd| command_exists(c, cmd));
            if !ok {
                res.unavailable.push(s.id);
            }
            ok
        })
        .collect();
    drop(conns);
    for id in &res.unavailable {
        println!(
            "  {id}: not run ({} not available)",
            spec(id).requires.unwrap_or("?")
        );
    }
    if compat_on {
        compat::check_replies(&servers, res)?;
    }

    if cfg.section("single") || compat_on {
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
                let on = servers.get(s.server).expect("filtered above");
                let addr = addr_of(on);
                for &depth in &cfg.pipelines {
                    done += 1;
                    let (r, disturbed) = quiet_run(cfg, &mut res.quiet, || {
                        setup_spec(addr, s, &sha)?;
                        let mut w = SingleWorkload::new(s, depth, &sha);
                        loadgen::run(RunSpec {
                            clients: vec![vec![addr]; cfg.conns],
                            warmup: cfg.warmup,
                            measure: cfg.measure,
                            deny: s.deny,
                            workload: &mut w,
                            seed: 0x5EED + rep as u64,
                            server_pids: on.pid().into_iter().collect(),
                            cores: cfg.cores(),
                        })
                    })?;
                    let verdict = check_run(s.expect, &r);
                    println!(
                        "  [{done}/{total}] {:<16} P{:<2} {:>11} req/s  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  {}",
                        s.id,
                        depth,
                        fmt_int(r.rps()),
                        r.hist.quantile_us(0.5),
                        r.hist.quantile_us(0.99),
                        r.hist.quantile_us(0.999),
                        cpu_and_verdict(&r, "server", &verdict)
                    );
                    let fig = res.single.entry((s.id, depth)).or_default();
                    fig.record(r, disturbed, verdict);
                }
            }
        }
        if cfg.section("single") {
            cross_check(cfg, server, &sha, res)?;
        }
    }
    if cfg.section("memory") {
        run_memory(cfg, &servers, &sha, res)?;
    }
    Ok(())
}

/// The Lua bucket must answer like SHIELD.absorb on the basics before we time it.
pub fn check_lua(c: &mut redis::Connection, sha: &str) -> Result<(), String> {
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

/// Loads the Functions library (`functions/shield.lua`) beside the module
/// and checks that it answers like `SHIELD.absorb` and stores the same bytes
/// before it is timed.
pub fn load_library(c: &mut redis::Connection) -> Result<(), String> {
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(library_source())
        .query(c)
        .map_err(|e| format!("FUNCTION LOAD REPLACE functions/shield.lua: {e}"))?;
    if name != "shield" {
        return Err(format!("FUNCTION LOAD answered {name:?}, want \"shield\""));
    }
    let mut got = Vec::new();
    for (cmd, key) in [("FCALL", "lib:check"), ("SHIELD.absorb", "mod:check")] {
        let mut replies = Vec::new();
        for _ in 0..4 {
            let mut q = redis::cmd(cmd);
            if cmd == "FCALL" {
                q.arg("shield_absorb").arg(1);
            }
            replies.push(
                q.arg(key)
                    .arg(3)
                    .arg(60)
                    .query::<i64>(c)
                    .unwrap_or(i64::MIN),
            );
        }
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query(c)
            .map_err(|e| e.to_string())?;
        got.push((replies, value));
    }
    let _: () = redis::cmd("DEL")
        .arg("lib:check")
        .arg("mod:check")
        .query(c)
        .map_err(|e| e.to_string())?;
    let want = (vec![2, 1, 0, -1], Some(b"~0".to_vec()));
    if got.iter().any(|g| *g != want) {
        return Err(format!(
            "library self-check: got (replies, value) {got:?} (library, module), want {want:?} for both"
        ));
    }
    Ok(())
}

pub fn benchmark_tool() -> Option<&'static str> {
    ["redis-benchmark", "valkey-benchmark"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
}

/// The same commands through `redis-benchmark` (same connections, same
/// pipeline depth, same pinned core): if our load generator were the
/// bottleneck, redis-benchmark would get more.
pub fn cross_check(
    cfg: &Config,
    server: &Server,
    sha: &str,
    res: &mut Results,
) -> Result<(), String> {
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
