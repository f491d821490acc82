//! Figures: the runs behind each number, and how they are summarized.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster::{Scenario, Strategy};
use crate::config::Config;
use crate::loadgen::{cores_busy_seconds, RunResult};
use crate::workloads::Srv;

pub fn median(mut v: Vec<f64>) -> f64 {
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

#[derive(Default, Clone)]
pub struct Figure {
    pub runs: Vec<RunResult>,
    pub invalid: Vec<String>,
    /// Kept runs that were still disturbed by other load after the retries.
    pub disturbed: usize,
}

impl Figure {
    pub fn rps(&self) -> f64 {
        median(self.runs.iter().map(RunResult::rps).collect())
    }
    pub fn q(&self, q: f64) -> f64 {
        median(self.runs.iter().map(|r| r.hist.quantile_us(q)).collect())
    }
    /// Median CPU use of the server(s), of the load generator, and of other
    /// load on the pinned cores, in % of one core.
    pub fn cpu(&self) -> (f64, f64, f64) {
        (
            median(self.runs.iter().map(|r| r.server_cpu * 100.0).collect()),
            median(self.runs.iter().map(|r| r.client_cpu * 100.0).collect()),
            median(self.runs.iter().map(|r| r.other_cpu * 100.0).collect()),
        )
    }
    /// `self ÷ other` of a per-run value, paired by round: the median of the
    /// rounds' ratios. The runs of one round are seconds apart, while the
    /// machine's speed can drift between rounds (a VM's host), which a ratio
    /// of two medians picks up when the drift lands on one side only. Falls
    /// back to the ratio of the medians when the runs do not pair up.
    pub fn paired_ratio(&self, other: &Figure, value: impl Fn(&RunResult) -> f64) -> f64 {
        if self.runs.len() != other.runs.len() || self.runs.is_empty() {
            return median(self.runs.iter().map(&value).collect())
                / median(other.runs.iter().map(&value).collect());
        }
        median(
            self.runs
                .iter()
                .zip(&other.runs)
                .map(|(a, b)| value(a) / value(b))
                .collect(),
        )
    }
    pub fn rps_range(&self) -> (f64, f64) {
        let v: Vec<f64> = self.runs.iter().map(RunResult::rps).collect();
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    }
    /// Adds a run, disturbed by other load or not, and its verdict.
    pub fn record(&mut self, r: RunResult, disturbed: bool, verdict: Result<(), String>) {
        self.disturbed += usize::from(disturbed);
        if let Err(e) = verdict {
            self.invalid.push(e);
        }
        self.runs.push(r);
    }
    pub fn valid(&self) -> bool {
        !self.runs.is_empty() && self.invalid.is_empty()
    }
}

pub struct MemFigure {
    /// The `memory::MEM_KINDS` id.
    pub id: &'static str,
    pub label: String,
    pub server: Srv,
    pub per_key: Vec<f64>,
    pub usage: Option<i64>,
    pub invalid: Vec<String>,
}

pub struct Results {
    pub server_desc: String,
    pub server_version: (String, String),
    pub single: HashMap<(&'static str, usize), Figure>,
    pub unavailable: Vec<&'static str>,
    /// (id, depth) -> redis-benchmark (req/s, server CPU %) per run.
    pub cross: HashMap<(&'static str, usize), Vec<(f64, f64)>>,
    pub cross_note: Option<String>,
    pub memory: Vec<MemFigure>,
    pub memory_note: Option<String>,
    pub cluster: HashMap<(Scenario, Strategy, usize), Figure>,
    pub cluster_note: Option<String>,
    pub cluster_path: Option<String>,
    /// Runs discarded because other load took CPU from the pinned cores,
    /// and time spent waiting for quiet cores.
    pub quiet: Quiet,
    /// The servers of the single-node section: role, binary, what is loaded.
    pub servers: Vec<ServerDesc>,
    /// The compatibility commands' replies checked before timing them.
    pub reply_checks: Vec<(String, Result<(), String>)>,
}

pub struct ServerDesc {
    pub srv: Srv,
    pub binary: std::path::PathBuf,
    /// e.g. "Redis 7.0.15".
    pub version: String,
    /// Modules loaded, and which of the commands is whose.
    pub loaded: String,
}

impl Results {
    pub fn new() -> Results {
        Results {
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
            quiet: Quiet::default(),
            servers: Vec::new(),
            reply_checks: Vec::new(),
        }
    }

    /// The memory figure of a `memory::MEM_KINDS` id.
    pub fn mem(&self, id: &str) -> Option<&MemFigure> {
        self.memory.iter().find(|m| m.id == id)
    }
}

#[derive(Default)]
pub struct Quiet {
    /// Runs discarded because other load took CPU from the pinned cores.
    pub discarded: usize,
    /// Seconds spent waiting for the pinned cores to be quiet before a retry.
    pub waited: f64,
}

/// Waits until the pinned cores have been quiet (their busy time, ours
/// included, at most `SHIELD_BENCH_MAX_OTHER_CPU` % of a core) for one window
/// of 0.5 s, at most `SHIELD_BENCH_QUIET_WAIT` seconds; returns the seconds
/// waited. Between runs the benchmark's own processes are idle.
pub fn wait_for_quiet(cfg: &Config) -> f64 {
    let cores = cfg.cores();
    let started = Instant::now();
    if cores.is_empty() || cfg.quiet_wait.is_zero() {
        return 0.0;
    }
    while started.elapsed() < cfg.quiet_wait {
        let (t0, b0) = (Instant::now(), cores_busy_seconds(&cores));
        std::thread::sleep(Duration::from_millis(500));
        let busy = (cores_busy_seconds(&cores) - b0) / t0.elapsed().as_secs_f64();
        if !busy.is_finite() || busy * 100.0 <= cfg.max_other_cpu {
            break;
        }
    }
    started.elapsed().as_secs_f64()
}

/// Runs `once` until other load on the pinned cores stays under the limit
/// (`SHIELD_BENCH_MAX_OTHER_CPU` % of a core), at most `1 + SHIELD_BENCH_RETRIES`
/// times; with `SHIELD_BENCH_QUIET_WAIT`, each retry first waits for quiet
/// cores ([`wait_for_quiet`]). Disturbed attempts are discarded (and
/// counted); if every attempt is disturbed the least disturbed one is kept
/// and reported as such.
pub fn quiet_run(
    cfg: &Config,
    quiet: &mut Quiet,
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
        quiet.discarded += 1;
        if best.as_ref().is_none_or(|b| r.other_cpu < b.other_cpu) {
            best = Some(r);
        }
        if attempt < cfg.retries {
            quiet.waited += wait_for_quiet(cfg);
        }
    }
    quiet.discarded -= 1; // the one kept
    Ok((best.expect("at least one attempt"), true))
}

/// The end of a run's progress line: the CPU use of the `servers`, of the
/// load generator and of other load, and why the run is invalid, if it is.
pub fn cpu_and_verdict(r: &RunResult, servers: &str, verdict: &Result<(), String>) -> String {
    format!(
        "cpu {servers} {:>3.0}% loadgen {:>3.0}% other {:>3.0}%{}",
        r.server_cpu * 100.0,
        r.client_cpu * 100.0,
        r.other_cpu * 100.0,
        match verdict {
            Ok(()) => String::new(),
            Err(e) => format!("  INVALID: {e}"),
        }
    )
}
