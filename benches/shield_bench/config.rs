//! Configuration: the command line and the `SHIELD_BENCH_*` environment.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Config {
    pub quick: bool,
    pub reps: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub conns: usize,
    pub pipelines: Vec<usize>,
    pub memory_buckets: u64,
    pub cluster_clients: Vec<usize>,
    pub sections: Vec<String>,
    pub server_cpu: Option<usize>,
    pub client_cpu: Option<usize>,
    pub absorball: AbsorballMode,
    pub out_dir: PathBuf,
    pub update_doc: bool,
    pub command_line: String,
    /// A run in which other load took more than this % of a pinned core is redone.
    pub max_other_cpu: f64,
    pub retries: usize,
    /// Before a retry, wait at most this long for the pinned cores to be quiet.
    pub quiet_wait: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AbsorballMode {
    Auto,
    Off,
}

pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    env(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    env(name)
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

impl Config {
    pub fn from_env(args: &[String]) -> Config {
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
            .unwrap_or_else(|| "single,compat,memory,cluster".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let mut env_part = String::new();
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("SHIELD_BENCH_")
                    || [
                        "SHIELD_SERVER_BIN",
                        "SHIELD_REDIS_CELL",
                        "SHIELD_GCRA_SERVER",
                        "SHIELD_REDIS7_BIN",
                    ]
                    .contains(&k.as_str())
            })
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
            absorball: match env("SHIELD_BENCH_ABSORBALL").as_deref() {
                Some("off" | "0" | "no") => AbsorballMode::Off,
                _ => AbsorballMode::Auto,
            },
            update_doc: !quick && env("SHIELD_BENCH_OUT").is_none(),
            max_other_cpu: env_num("SHIELD_BENCH_MAX_OTHER_CPU", 15.0),
            retries: env_num("SHIELD_BENCH_RETRIES", 2),
            quiet_wait: Duration::from_secs_f64(env_num("SHIELD_BENCH_QUIET_WAIT", 0.0)),
            out_dir,
            command_line,
        }
    }

    /// The cores servers and load generator are pinned to.
    pub fn cores(&self) -> Vec<usize> {
        self.server_cpu.into_iter().chain(self.client_cpu).collect()
    }

    pub fn section(&self, s: &str) -> bool {
        self.sections.iter().any(|x| x == s)
    }

    pub fn describe_load(&self) -> String {
        format!(
            "each figure is the median of {} run(s) of {:.1} s, each after {:.1} s of warm-up; \
             runs of different workloads are interleaved",
            self.reps,
            self.measure.as_secs_f64(),
            self.warmup.as_secs_f64()
        )
    }
}
