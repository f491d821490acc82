//! The cluster section: a 6-node Redis Cluster (3 masters + 3 replicas),
//! started by the test kit (`shield_testkit::Cluster`, without AOF and with a
//! 5 s node timeout), the key → slot → master routing the load generator
//! needs, and the multi-descriptor workloads run on it.

use std::net::SocketAddr;

use shield_testkit::key_slot::{key_slot, KNOWN_SLOTS, SLOTS};
use shield_testkit::{info_field, Cluster, ClusterOptions, Rng, Server};

use crate::config::{AbsorballMode, Config};
use crate::loadgen::{self, DenyCheck, Plan, RunSpec, Workload};
use crate::report::fmt_int;
use crate::results::{cpu_and_verdict, quiet_run, Results};
use crate::system::pin_process;
use crate::workloads::{check_run, command_exists, write_digits, Expect, KEYS};

pub fn self_check() -> Vec<(&'static str, Result<(), String>)> {
    let bad: Vec<String> = KNOWN_SLOTS
        .iter()
        .filter(|(k, s)| key_slot(k.as_bytes()) != *s)
        .map(|(k, s)| format!("{k:?}: {} != {s}", key_slot(k.as_bytes())))
        .collect();
    vec![(
        "cluster: key_slot known answers",
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join(", "))
        },
    )]
}

/// The kit's cluster, and where each slot lives.
pub struct BenchCluster {
    cluster: Cluster,
    /// Master addresses, index = master number (masters sorted by port).
    pub masters: Vec<SocketAddr>,
    /// slot -> master number.
    slot_master: Vec<u8>,
}

/// The message of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

impl BenchCluster {
    /// Starts the cluster with the kit (which waits until every node reports
    /// `cluster_state:ok` and agrees on the topology, and every replica has
    /// synced), pins every node to `server_cpu`, and reads the slot map. A
    /// cluster that cannot be started is an `Err` (the section is reported
    /// as not run), not a panic.
    pub fn start(server_cpu: Option<usize>) -> Result<BenchCluster, String> {
        let cluster = std::panic::catch_unwind(|| {
            Cluster::start_with(ClusterOptions {
                appendonly: Some(false),
                node_timeout_ms: Some(5000),
                ..ClusterOptions::default()
            })
        })
        .map_err(|p| format!("could not start the cluster: {}", panic_text(&*p)))?;
        for s in cluster.servers() {
            if let Some(pid) = s.pid() {
                pin_process(pid, server_cpu);
            }
        }
        let masters = cluster.masters();
        if masters.len() != 3 {
            return Err(format!(
                "expected 3 masters, got {:?}",
                masters.iter().map(|m| m.addr()).collect::<Vec<_>>()
            ));
        }
        let mut slot_master = vec![u8::MAX; usize::from(SLOTS)];
        for (m, node) in masters.iter().enumerate() {
            for &(first, last) in &node.slots {
                for s in first..=last {
                    slot_master[usize::from(s)] = m as u8;
                }
            }
        }
        if slot_master.contains(&u8::MAX) {
            return Err("some slots have no master".into());
        }
        let cluster = BenchCluster {
            masters: masters
                .iter()
                .map(|m| SocketAddr::from(([127, 0, 0, 1], m.port)))
                .collect(),
            cluster,
            slot_master,
        };
        cluster.check_key_slots()?;
        Ok(cluster)
    }

    /// The server processes (pinned, sampled for CPU).
    pub fn nodes(&self) -> &[Server] {
        self.cluster.servers()
    }

    pub fn master_of(&self, key: &[u8]) -> usize {
        self.slot_master[key_slot(key) as usize] as usize
    }

    /// Our key_slot must agree with the server's on keys like the ones we send.
    fn check_key_slots(&self) -> Result<(), String> {
        let mut c = self.nodes()[0].conn();
        let mut checked = 0;
        for i in 0..300u32 {
            let key = match i % 3 {
                0 => format!("v:{i:06}"),
                1 => format!("{{u:{i:06}}}:d1"),
                _ => format!("x{i}{{{}}}y", i * 7),
            };
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&key)
                .query(&mut c)
                .map_err(|e| e.to_string())?;
            if slot != key_slot(key.as_bytes()) as i64 {
                return Err(format!(
                    "key_slot({key:?}) = {} but CLUSTER KEYSLOT says {slot}",
                    key_slot(key.as_bytes())
                ));
            }
            checked += 1;
        }
        for (k, s) in KNOWN_SLOTS {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(*k)
                .query(&mut c)
                .map_err(|e| e.to_string())?;
            if slot != *s as i64 {
                return Err(format!("CLUSTER KEYSLOT {k:?} = {slot}, table says {s}"));
            }
            checked += 1;
        }
        println!("  key_slot agrees with CLUSTER KEYSLOT on {checked} keys");
        Ok(())
    }
}

// ---------------------------------------------------------------- workloads

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Scenario {
    FixedKey,
    VariableKey,
    Mixed2,
    Mixed10,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::FixedKey,
        Scenario::VariableKey,
        Scenario::Mixed2,
        Scenario::Mixed10,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FixedKey => "fixed_key",
            Scenario::VariableKey => "variable_key",
            Scenario::Mixed2 => "mixed_2keys",
            Scenario::Mixed10 => "mixed_10keys",
        }
    }
    pub fn descriptors(self) -> usize {
        match self {
            Scenario::FixedKey | Scenario::VariableKey => 1,
            Scenario::Mixed2 => 2,
            Scenario::Mixed10 => 10,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Strategy {
    Sequential,
    Parallel,
}

impl Strategy {
    pub const ALL: [Strategy; 2] = [Strategy::Sequential, Strategy::Parallel];
    pub fn short(self) -> &'static str {
        match self {
            Strategy::Sequential => "sequential",
            Strategy::Parallel => "pipelines",
        }
    }
}

/// Bucket parameters of the cluster descriptors (never run dry during a run).
pub const C_HOT: (&str, &str) = ("1000000000000", "10000000000");
pub const C_RAND: (&str, &str) = ("1000000", "60000000");

pub struct ClusterWorkload<'a> {
    pub scenario: Scenario,
    pub strategy: Strategy,
    pub absorball: bool,
    pub cluster: &'a BenchCluster,
    /// For each master, user numbers whose `{u:NNNNNN}` tag hashes to it.
    pub tags: &'a [Vec<u32>],
    pub groups: Vec<(usize, Vec<Vec<u8>>)>,
}

impl ClusterWorkload<'_> {
    /// The request's descriptors as slot groups: (master, keys of one slot).
    pub fn fill_groups(&mut self, rng: &mut Rng) {
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

pub fn run_cluster(cfg: &Config, res: &mut Results) -> Result<(), String> {
    println!("\n== cluster: 6 nodes (3 masters + 3 replicas), all on the server CPU");
    let cl = BenchCluster::start(cfg.server_cpu)?;
    let mut ctl = cl.nodes()[0].conn();
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
                    let (r, disturbed) = quiet_run(cfg, &mut res.quiet, || {
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
                            server_pids: cl.nodes().iter().filter_map(Server::pid).collect(),
                            cores: cfg.cores(),
                        })
                    })?;
                    let verdict = check_run(Expect::Admitted, &r);
                    println!(
                        "  [{done}/{total}] c={clients:<3} {:<13} {:<10} {:>9} req/s  p50 {:>8.1} us  p95 {:>8.1} us  p99 {:>8.1} us  {}",
                        scenario.name(),
                        strategy.short(),
                        fmt_int(r.rps()),
                        r.hist.quantile_us(0.5),
                        r.hist.quantile_us(0.95),
                        r.hist.quantile_us(0.99),
                        cpu_and_verdict(&r, "servers", &verdict)
                    );
                    let fig = res
                        .cluster
                        .entry((scenario, strategy, clients))
                        .or_default();
                    fig.record(r, disturbed, verdict);
                }
            }
        }
    }
    // Which commands the masters actually ran (proves the path that was used).
    let mut counts: Vec<String> = Vec::new();
    for cmd in ["shield.absorb", "shield.absorball"] {
        let mut calls = 0u64;
        for m in cl.nodes() {
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
