//! Side-by-side benchmark of `SHIELD.absorb` against what users would
//! otherwise run, and of the compatibility commands (`CL.THROTTLE`, `GCRA`)
//! against the implementations they follow (see BENCHMARKS.md). Starts its
//! own servers with the freshly built module, pins server and load generator
//! to separate cores, and writes `bench-results/latest.md` and
//! `bench-results/ratios.png`.
//!
//! ```sh
//! cargo bench --bench shield_bench                 # full run
//! SHIELD_BENCH_QUICK=1 cargo bench --bench shield_bench   # smoke run
//! ```
//!
//! Run without `--bench` (as a plain `cargo test` does: `test = true` in
//! Cargo.toml) it only runs its self-checks (RESP parser, reply checks,
//! histogram, key slots, PNG encoder, the BENCHMARKS.md section, the
//! compatibility workloads and reply probes), no servers; a failing one exits
//! with status 1.
//!
//! Servers and the cluster come from the test kit (`shield-testkit`). One
//! module per concern: `config` (environment, `Config`), `workloads` (the
//! single-node workload table), `single` (single node and the redis-benchmark
//! cross-check), `compat` (the reference servers of `CL.THROTTLE` and `GCRA`,
//! their reply checks and ratios), `memory`, `cluster`, `results` (figures),
//! `report` (markdown,
//! targets, the BENCHMARKS.md section, the chart), `system` (pinning, the
//! machine), and `loadgen` (the load generator) and `chart` (the PNG).

// Test code: a failing step should fail the test loudly (the module crate's
// lint policy forbids these in the server layer, not here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod chart;
mod cluster;
mod compat;
mod config;
mod loadgen;
mod memory;
mod report;
mod results;
mod single;
mod system;
mod workloads;

use std::time::Instant;

use shield_testkit::{module_path, server_binary, server_version_info, Server, ServerOptions};

use config::Config;
use results::Results;
use system::{machine, set_affinity, sh};

fn self_checks() -> bool {
    let mut all = loadgen::self_check();
    all.extend(cluster::self_check());
    all.extend(chart::self_check());
    all.extend(report::self_check());
    all.extend(compat::self_check());
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
    println!(
        "shield_bench self-checks: {} passed, {failed} failed",
        all.len() - failed
    );
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
    let bin = server_binary();
    println!(
        "redis-shield benchmark{}",
        if cfg.quick { " (QUICK mode)" } else { "" }
    );
    println!("  command: {}", cfg.command_line);
    println!("  machine: {}", machine());
    println!("  module:  {}", module_path().display());
    match (cfg.server_cpu, cfg.client_cpu) {
        (Some(s), Some(c)) => println!("  pinning: servers on CPU {s}, load generator on CPU {c}"),
        _ => println!("  pinning: none (fewer than 2 CPUs)"),
    }
    let mut res = Results::new();
    {
        // Version from a running server (Valkey also reports a redis_version).
        let probe = Server::start(ServerOptions::default());
        let mut c = probe.conn();
        res.server_version = server_version_info(&mut c);
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

    if cfg.section("single") || cfg.section("compat") || cfg.section("memory") {
        single::run_single(&cfg, &mut res)?;
    }
    if !cfg.section("memory") {
        res.memory_note = Some("not run (`SHIELD_BENCH_ONLY` excluded it)".into());
    }
    if cfg.section("cluster") {
        if let Err(e) = cluster::run_cluster(&cfg, &mut res) {
            println!("  cluster: NOT RUN: {e}");
            res.cluster_note = Some(format!("Not run: {e}"));
        }
    } else {
        res.cluster_note = Some("Not run (`SHIELD_BENCH_ONLY` excluded it).".into());
    }

    let md = report::markdown(&cfg, &res, started.elapsed(), &date);
    let png = report::chart(&cfg, &res);
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| e.to_string())?;
    let md_path = cfg.out_dir.join("latest.md");
    let png_path = cfg.out_dir.join("ratios.png");
    std::fs::write(&md_path, &md).map_err(|e| e.to_string())?;
    std::fs::write(&png_path, &png).map_err(|e| e.to_string())?;
    println!("\n{md}");
    println!("wrote {} and {}", md_path.display(), png_path.display());
    if cfg.update_doc && report::update_doc(&md)? {
        println!("updated the results section of BENCHMARKS.md");
    }
    println!("total time: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; anything else (e.g. `cargo test`)
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
