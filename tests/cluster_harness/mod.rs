//! Cluster test harness: a real Redis Cluster (3 masters + 3 replicas) for the
//! tests behind the `cluster-tests` feature.
//!
//! * `Cluster::for_test()` uses the cluster named by `REDIS_CLUSTER_URLS`
//!   (comma-separated `redis://host:port` seeds) when it is set, and otherwise
//!   starts its own: six servers from `tests/common` (free loopback ports whose
//!   cluster bus port, +10000, is free too; each in its own temp dir; the freshly
//!   built module loaded; every option of `cluster-node.conf`), joined with
//!   `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, and
//!   waited for by polling until every node reports `cluster_state:ok`, all
//!   nodes agree on the topology and every replica is in sync.
//! * `Cluster::own(why)` always starts its own cluster: for tests that SIGKILL
//!   or restart server processes, which is only possible on processes this test
//!   started. When `REDIS_CLUSTER_URLS` is set it says so on stderr.
//!
//! Own servers are stopped by PID when the `Cluster` is dropped, also when the
//! test panics (their directories are then kept and printed). On an external
//! cluster, the keys a test created (all under its unique `key()` prefix) are
//! deleted when the `Cluster` is dropped.
//!
//! Include it next to the single-server harness:
//! ```ignore
//! mod common;
//! mod cluster_harness;
//! ```
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::cluster::{ClusterClient, ClusterConnection};

use crate::common::{info_field, server_binary, wait_until, Server, ServerOptions};

/// Nodes of a self-started cluster: 3 masters, each with 1 replica.
pub const NODES: usize = 6;
pub const MASTERS: usize = 3;
/// Environment variable naming an existing cluster to test instead.
pub const CLUSTER_URLS_ENV: &str = "REDIS_CLUSTER_URLS";

/// How long a cluster may take to become healthy (after creation, a failover,
/// a restart or a resharding) before the test fails.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Read/write timeout of the direct node connections.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// `cluster-node.conf` at the repository root: the options every node gets.
pub fn node_conf_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster-node.conf")
}

/// The `(name, value)` options of `cluster-node.conf`, in file order.
/// Comment and blank lines are skipped; `""` is the empty value.
pub fn node_conf_options() -> Vec<(String, String)> {
    let path = node_conf_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_conf(&text)
}

/// Parse `name value` config lines (the subset of redis.conf syntax used by
/// cluster-node.conf: one option per line, a value that is a plain word,
/// several words, or `""`).
pub fn parse_conf(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let value = value.trim();
            let value = if value == "\"\"" { "" } else { value };
            (name.to_lowercase(), value.to_string())
        })
        .collect()
}

/// The cluster management client: `$SHIELD_REDIS_CLI`, else `redis-cli`, else
/// `valkey-cli` on PATH. (Debian's redis-cli 7.0 also creates Redis 8 and
/// Valkey 9 clusters.)
pub fn redis_cli() -> PathBuf {
    if let Some(cli) = std::env::var_os("SHIELD_REDIS_CLI") {
        let cli = PathBuf::from(cli);
        assert!(
            cli.is_file(),
            "SHIELD_REDIS_CLI={} does not exist",
            cli.display()
        );
        return cli;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["redis-cli", "valkey-cli"] {
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return p;
        }
    }
    panic!(
        "no redis-cli or valkey-cli found: the cluster tests create their cluster with \
         `redis-cli --cluster create`. Install it (`apt-get install redis-tools`), put it on \
         PATH or set SHIELD_REDIS_CLI, or point {CLUSTER_URLS_ENV} at a running cluster"
    );
}

// ---------------------------------------------------------------------------
// Hash slots
// ---------------------------------------------------------------------------

pub use crate::common::key_slot::{key_slot, SLOTS};

// ---------------------------------------------------------------------------
// Topology (CLUSTER NODES)
// ---------------------------------------------------------------------------

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// Flags without `myself` (so that all nodes' views can be compared).
    pub flags: Vec<String>,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served, inclusive (masters only; migration markers skipped).
    pub slots: Vec<(u16, u16)>,
    /// True on the line that describes the node that answered.
    pub myself: bool,
}

impl ClusterNode {
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }
    /// Flagged as failing (`fail`, or `fail?` = suspected), or not usable yet.
    pub fn is_failing(&self) -> bool {
        self.flags
            .iter()
            .any(|f| matches!(f.as_str(), "fail" | "fail?" | "handshake" | "noaddr"))
    }
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    pub fn serves_slot(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|&(a, b)| usize::from(b - a) + 1)
            .sum()
    }
}

/// Parse a `CLUSTER NODES` reply. Address forms: `ip:port@cport` and
/// `ip:port@cport,hostname` (Redis 7+ / Valkey).
pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 8, "unexpected CLUSTER NODES line: {line}");
            let addr = f[1].split(',').next().unwrap().split('@').next().unwrap();
            let (host, port) = addr
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("bad address in CLUSTER NODES line: {line}"));
            let mut flags: Vec<String> = f[2].split(',').map(str::to_string).collect();
            let myself = flags.iter().any(|f| f == "myself");
            flags.retain(|f| f != "myself");
            let master_id = (f[3] != "-").then(|| f[3].to_string());
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('[')) // [slot->-id] / [slot-<-id]: migrations
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (s.parse().unwrap(), s.parse().unwrap()),
                })
                .collect();
            ClusterNode {
                id: f[0].to_string(),
                host: host.to_string(),
                port: port.parse().unwrap(),
                flags,
                master_id,
                slots,
                myself,
            }
        })
        .collect()
}

/// `host:port` of a `redis://[user:pass@]host:port[/db]` URL, and its
/// `user:pass@` part ("" without one).
fn parse_url(url: &str) -> (String, u16, String) {
    let rest = url
        .trim()
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("{CLUSTER_URLS_ENV}: {url:?} is not a redis://host:port URL"));
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (format!("{auth}@"), rest),
        None => (String::new(), rest),
    };
    let hostport = rest.split('/').next().unwrap();
    let (host, port) = hostport
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{CLUSTER_URLS_ENV}: {url:?} has no port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{CLUSTER_URLS_ENV}: bad port in {url:?}"));
    (host.to_string(), port, auth)
}

// ---------------------------------------------------------------------------
// Small helpers used by the tests
// ---------------------------------------------------------------------------

/// `SHIELD.absorb key capacity period [tokens]` on any connection (a node's or
/// the cluster client's), returning the server's answer.
pub fn try_absorb(
    c: &mut impl redis::ConnectionLike,
    key: &str,
    capacity: u64,
    period: u64,
    tokens: Option<u64>,
) -> redis::RedisResult<i64> {
    let mut cmd = redis::cmd("SHIELD.absorb");
    cmd.arg(key).arg(capacity).arg(period);
    if let Some(t) = tokens {
        cmd.arg(t);
    }
    cmd.query(c)
}

/// `SHIELD.absorb`, expecting an integer reply.
pub fn absorb(
    c: &mut impl redis::ConnectionLike,
    key: &str,
    capacity: u64,
    period: u64,
    tokens: Option<u64>,
) -> i64 {
    try_absorb(c, key, capacity, period, tokens)
        .unwrap_or_else(|e| panic!("SHIELD.absorb {key} {capacity} {period} {tokens:?}: {e}"))
}

/// The stored state of a bucket as seen by one node: `(GET, PEXPIRETIME)`.
/// (On a replica the connection must have sent `READONLY`.)
pub fn bucket_state(c: &mut redis::Connection, key: &str) -> (Option<Vec<u8>>, i64) {
    let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(c).expect("GET");
    let expire: i64 = redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(c)
        .expect("PEXPIRETIME");
    (value, expire)
}

/// `INFO <section>` of a node.
pub fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(c).expect("INFO")
}

/// A small deterministic pseudo-random generator (SplitMix64), seeded from the
/// clock, for random key names without extra dependencies.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(nanos ^ (u64::from(std::process::id()) << 32))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-enough value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

/// A running cluster: either six servers this test started, or an external one.
pub struct Cluster {
    /// Our own server processes (empty for an external cluster).
    servers: Vec<Server>,
    /// Seed addresses `(host, port)` given to cluster clients.
    seeds: Vec<(String, u16)>,
    /// `user:pass@` from the external URLs ("" for none / own clusters).
    auth: String,
    external: bool,
    /// Unique per `Cluster`: every key a test makes goes under it, so runs
    /// against the same external cluster never see each other's buckets.
    prefix: String,
}

impl Cluster {
    /// The cluster of `REDIS_CLUSTER_URLS` if set, else a fresh one of our own.
    pub fn for_test() -> Cluster {
        match std::env::var(CLUSTER_URLS_ENV) {
            Ok(urls) if !urls.trim().is_empty() => Cluster::external(&urls),
            _ => Cluster::start(),
        }
    }

    /// Always a fresh cluster of our own, for a test that must SIGKILL or
    /// restart server processes (`why` says which). If `REDIS_CLUSTER_URLS` is
    /// set, say loudly that this test does not run on it.
    pub fn own(why: &str) -> Cluster {
        if std::env::var(CLUSTER_URLS_ENV).is_ok_and(|u| !u.trim().is_empty()) {
            let test = std::thread::current()
                .name()
                .unwrap_or("this test")
                .to_string();
            let note = format!(
                "NOTE: {CLUSTER_URLS_ENV} is set, but {test} {why}: it can only do that to \
                 server processes it started itself, so it runs on its own fresh 6-node \
                 cluster (server binary {}), not on the external cluster.\n",
                server_binary().display()
            );
            // Straight to the process's stderr: the test harness captures
            // `eprintln!` of passing tests, and this must be seen.
            use std::io::Write;
            let _ = std::io::stderr().write_all(note.as_bytes());
        }
        Cluster::start()
    }

    /// Use an existing cluster: comma-separated `redis://host:port` seeds.
    pub fn external(urls: &str) -> Cluster {
        let parsed: Vec<(String, u16, String)> = urls
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(parse_url)
            .collect();
        assert!(!parsed.is_empty(), "{CLUSTER_URLS_ENV} names no node");
        let auth = parsed[0].2.clone();
        let cluster = Cluster {
            servers: vec![],
            seeds: parsed.into_iter().map(|(h, p, _)| (h, p)).collect(),
            auth,
            external: true,
            prefix: unique_prefix(),
        };
        eprintln!(
            "using the external cluster {CLUSTER_URLS_ENV}={urls} (key prefix {})",
            cluster.prefix
        );
        cluster.wait_healthy("the external cluster to be healthy");
        cluster
    }

    /// Start six servers with the module and join them into a cluster.
    pub fn start() -> Cluster {
        let started = Instant::now();
        let cli = redis_cli(); // fail early with a clear message if missing
        let mut opts = ServerOptions::default().appendonly(true);
        for (name, value) in node_conf_options() {
            opts = opts.arg(format!("--{name}")).arg(value);
        }
        let servers: Vec<Server> = (0..NODES).map(|_| Server::start(opts.clone())).collect();
        let seeds: Vec<(String, u16)> = servers
            .iter()
            .map(|s| ("127.0.0.1".to_string(), s.port()))
            .collect();
        let cluster = Cluster {
            servers,
            seeds,
            auth: String::new(),
            external: false,
            prefix: unique_prefix(),
        };

        // redis-cli's output goes to a file in the first node's directory (kept
        // if the test fails); the run is bounded, so a stuck create fails the
        // test instead of hanging it.
        let log_path = cluster.servers[0].dir().join("cluster-create.log");
        let log = std::fs::File::create(&log_path).expect("create cluster-create.log");
        let mut create = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(cluster.seeds.iter().map(|(h, p)| format!("{h}:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("run {} --cluster create: {e}", cli.display()));
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        let status = loop {
            if let Some(status) = create.try_wait().expect("wait for redis-cli") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = create.kill();
                let _ = create.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none_or(|s| !s.success()) {
            panic!(
                "{} --cluster create {}:\n{}\n--- node logs ---\n{}",
                cli.display(),
                match status {
                    Some(s) => format!("failed ({s})"),
                    None => format!("did not finish in {HEALTHY_TIMEOUT:?}"),
                },
                std::fs::read_to_string(&log_path).unwrap_or_default(),
                cluster.log_tails()
            );
        }
        cluster.wait_healthy("the new cluster to be healthy");
        eprintln!(
            "started a {NODES}-node cluster on ports {:?} in {:?}",
            cluster.seeds.iter().map(|s| s.1).collect::<Vec<_>>(),
            started.elapsed()
        );
        cluster
    }

    pub fn is_external(&self) -> bool {
        self.external
    }

    /// A key name unique to this cluster handle: `shield-test:<unique>:<name>`.
    /// `name` may carry a hash tag (`{user:123}:api`): the prefix has no braces.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// `redis://` URLs of the seeds.
    pub fn seed_urls(&self) -> Vec<String> {
        self.alive_seeds()
            .iter()
            .map(|(h, p)| format!("redis://{}{h}:{p}/", self.auth))
            .collect()
    }

    /// Seeds whose process is running (all seeds of an external cluster).
    fn alive_seeds(&self) -> Vec<(String, u16)> {
        if self.external {
            return self.seeds.clone();
        }
        self.servers
            .iter()
            .filter(|s| s.pid().is_some())
            .map(|s| ("127.0.0.1".to_string(), s.port()))
            .collect()
    }

    /// A cluster client, as an application would make one: it routes each
    /// command to the master of its key's slot and follows MOVED and ASK.
    pub fn client(&self) -> ClusterClient {
        ClusterClient::builder(self.seed_urls())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(IO_TIMEOUT)
            .build()
            .expect("cluster client")
    }

    /// A new cluster connection.
    pub fn conn(&self) -> ClusterConnection {
        self.client()
            .get_connection()
            .expect("connect to the cluster")
    }

    /// A direct (non-cluster) connection to one node.
    pub fn node_conn(&self, host: &str, port: u16) -> redis::Connection {
        let c = self
            .node_client(host, port)
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to node {host}:{port}: {e}"));
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        c
    }

    /// A direct connection to a node of the topology.
    pub fn conn_to(&self, node: &ClusterNode) -> redis::Connection {
        self.node_conn(&node.host, node.port)
    }

    /// A direct connection to a replica, in `READONLY` mode so that it answers
    /// reads of its master's keys instead of redirecting them.
    pub fn replica_conn(&self, node: &ClusterNode) -> redis::Connection {
        let mut c = self.conn_to(node);
        let _: () = redis::cmd("READONLY").query(&mut c).expect("READONLY");
        c
    }

    fn node_client(&self, host: &str, port: u16) -> redis::Client {
        redis::Client::open(format!("redis://{}{host}:{port}/", self.auth)).expect("node client")
    }

    /// The topology as seen by the first reachable node (alive seed).
    pub fn topology(&self) -> Vec<ClusterNode> {
        let mut last_err = String::new();
        for (host, port) in self.alive_seeds() {
            match self.try_topology_of(&host, port) {
                Ok(nodes) => return nodes,
                Err(e) => last_err = format!("{host}:{port}: {e}"),
            }
        }
        panic!("no node answered CLUSTER NODES ({last_err})");
    }

    fn try_topology_of(&self, host: &str, port: u16) -> redis::RedisResult<Vec<ClusterNode>> {
        let mut c = self
            .node_client(host, port)
            .get_connection_with_timeout(Duration::from_secs(1))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c)?;
        Ok(parse_cluster_nodes(&text))
    }

    /// Masters that serve slots (failing ones excluded), sorted by port.
    pub fn masters(&self) -> Vec<ClusterNode> {
        let mut m: Vec<ClusterNode> = self
            .topology()
            .into_iter()
            .filter(|n| n.is_master() && !n.is_failing() && !n.slots.is_empty())
            .collect();
        m.sort_by_key(|n| (n.host.clone(), n.port));
        m
    }

    /// Replicas (not failing) of the master with this id.
    pub fn replicas_of(&self, master_id: &str) -> Vec<ClusterNode> {
        self.topology()
            .into_iter()
            .filter(|n| n.master_id.as_deref() == Some(master_id) && !n.is_failing())
            .collect()
    }

    /// The master serving `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> ClusterNode {
        self.masters()
            .into_iter()
            .find(|m| m.serves_slot(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// `CLUSTER KEYSLOT key`, as computed by a node (not by our `key_slot`).
    pub fn server_keyslot(&self, key: &str) -> u16 {
        let (host, port) = self.alive_seeds()[0].clone();
        let mut c = self.node_conn(&host, port);
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .expect("CLUSTER KEYSLOT")
    }

    /// Our own server process listening on `port` (own clusters only).
    pub fn server_mut(&mut self, port: u16) -> &mut Server {
        assert!(
            !self.external,
            "cannot control the processes of an external cluster"
        );
        self.servers
            .iter_mut()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server of ours on port {port}"))
    }

    /// SIGKILL the process of `node` (no AOF flush, no goodbye to the cluster).
    pub fn kill(&mut self, node: &ClusterNode) {
        let server = self.server_mut(node.port);
        let pid = server.pid();
        assert!(pid.is_some(), "node {} is not running", node.addr());
        eprintln!("SIGKILL node {} (pid {pid:?})", node.addr());
        server.kill_hard();
    }

    /// Graceful stop (SHUTDOWN) and start again on the same port and directory,
    /// so the node reloads its `nodes.conf` and its AOF.
    pub fn restart(&mut self, node: &ClusterNode) {
        let server = self.server_mut(node.port);
        eprintln!("restart node {} (pid {:?})", node.addr(), server.pid());
        server.restart();
    }

    /// Start again a node that was killed, on the same port and directory.
    pub fn start_again(&mut self, node: &ClusterNode) {
        let server = self.server_mut(node.port);
        assert!(server.pid().is_none(), "node {} is running", node.addr());
        server.restart(); // stop() is a no-op for a dead server
    }

    /// Poll until the cluster is healthy; panic with the last problem seen.
    pub fn wait_healthy(&self, what: &str) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let Some(problem) = self.health_problem() else {
                return;
            };
            if Instant::now() > deadline {
                panic!(
                    "timed out after {HEALTHY_TIMEOUT:?} waiting for {what}: {problem}\n\
                     --- node logs ---\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// None when the cluster is healthy, else what is wrong. Healthy means, for
    /// every running node: `cluster_state:ok` with all 16384 slots ok; the same
    /// view of the running nodes (ids, addresses, roles, masters, slots) as
    /// every other running node, with none of them flagged failing; a replica's
    /// link to its master up and synced, and each master listing all of its
    /// running replicas as `online` (so that `WAIT` counts them).
    pub fn health_problem(&self) -> Option<String> {
        let alive: Vec<(String, u16)> = if self.external {
            // Every node the cluster knows of that is not flagged as failed.
            let nodes = (|| {
                for (h, p) in &self.seeds {
                    if let Ok(n) = self.try_topology_of(h, *p) {
                        return Some(n);
                    }
                }
                None
            })();
            let Some(nodes) = nodes else {
                return Some("no seed node answers".into());
            };
            nodes
                .iter()
                .filter(|n| !n.flags.iter().any(|f| f == "fail" || f == "noaddr"))
                .map(|n| (n.host.clone(), n.port))
                .collect()
        } else {
            self.alive_seeds()
        };
        let is_alive = |n: &ClusterNode| alive.iter().any(|(h, p)| *h == n.host && *p == n.port);

        // Each running node's view of the running nodes: (id, addr, master?, master id, slots).
        type View = BTreeMap<String, (String, bool, Option<String>, Vec<(u16, u16)>)>;
        let mut first: Option<(String, View)> = None;
        for (host, port) in &alive {
            let addr = format!("{host}:{port}");
            let mut c = match self
                .node_client(host, *port)
                .get_connection_with_timeout(Duration::from_secs(1))
            {
                Ok(c) => c,
                Err(e) => return Some(format!("{addr} unreachable: {e}")),
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let cinfo: String = match redis::cmd("CLUSTER").arg("INFO").query(&mut c) {
                Ok(i) => i,
                Err(e) => return Some(format!("{addr}: CLUSTER INFO: {e}")),
            };
            for (field, want) in [
                ("cluster_state", "ok".to_string()),
                ("cluster_slots_assigned", SLOTS.to_string()),
                ("cluster_slots_ok", SLOTS.to_string()),
            ] {
                let got = info_field(&cinfo, field);
                if got.as_deref() != Some(want.as_str()) {
                    return Some(format!("{addr}: {field} is {got:?}, want {want}"));
                }
            }
            let text: String = match redis::cmd("CLUSTER").arg("NODES").query(&mut c) {
                Ok(t) => t,
                Err(e) => return Some(format!("{addr}: CLUSTER NODES: {e}")),
            };
            let nodes = parse_cluster_nodes(&text);
            let mut view = View::new();
            for n in nodes.iter().filter(|n| is_alive(n)) {
                if n.is_failing() {
                    return Some(format!("{addr} sees {} as {:?}", n.addr(), n.flags));
                }
                let mut slots = n.slots.clone();
                slots.sort();
                view.insert(
                    n.id.clone(),
                    (n.addr(), n.is_master(), n.master_id.clone(), slots),
                );
            }
            if view.len() != alive.len() {
                return Some(format!(
                    "{addr} knows {} of the {} running nodes",
                    view.len(),
                    alive.len()
                ));
            }
            match &first {
                None => first = Some((addr.clone(), view.clone())),
                Some((first_addr, first_view)) if *first_view != view => {
                    return Some(format!(
                    "{addr} and {first_addr} disagree on the topology:\n{view:?}\n{first_view:?}"
                ))
                }
                Some(_) => {}
            }

            // Replication links.
            let me = nodes.iter().find(|n| n.myself);
            let repl: String = match redis::cmd("INFO").arg("replication").query(&mut c) {
                Ok(r) => r,
                Err(e) => return Some(format!("{addr}: INFO replication: {e}")),
            };
            match me {
                Some(me) if me.is_master() => {
                    let replicas: Vec<&ClusterNode> = nodes
                        .iter()
                        .filter(|n| n.master_id.as_deref() == Some(&me.id) && is_alive(n))
                        .collect();
                    for r in replicas {
                        let online = format!("port={},state=online", r.port);
                        if !repl
                            .lines()
                            .any(|l| l.starts_with("slave") && l.contains(&online))
                        {
                            return Some(format!(
                                "master {addr} does not list {} online",
                                r.addr()
                            ));
                        }
                    }
                }
                Some(_) => {
                    if info_field(&repl, "master_link_status").as_deref() != Some("up")
                        || info_field(&repl, "master_sync_in_progress").as_deref() != Some("0")
                    {
                        return Some(format!("replica {addr} is not in sync with its master"));
                    }
                }
                None => return Some(format!("{addr}: no `myself` line in CLUSTER NODES")),
            }
        }
        None
    }

    /// Wait until the replica `node` is a master serving `slot`, and the
    /// cluster is healthy again (all running nodes agree).
    pub fn wait_promoted(&self, node: &ClusterNode, slot: u16) {
        let what = format!("{} to be promoted to master of slot {slot}", node.addr());
        wait_until(HEALTHY_TIMEOUT, &what, || {
            self.try_topology_of(&node.host, node.port)
                .map(|nodes| {
                    nodes
                        .iter()
                        .any(|n| n.myself && n.is_master() && n.serves_slot(slot))
                })
                .unwrap_or(false)
        });
        self.wait_healthy(&what);
    }

    /// Move `slot` from `source` to `target` the way `redis-cli --cluster
    /// reshard` does, while clients may keep using it:
    /// `CLUSTER SETSLOT <slot> IMPORTING` on the target, `MIGRATING` on the
    /// source; then `CLUSTER GETKEYSINSLOT` + `MIGRATE ... KEYS` in batches of
    /// `batch` keys until the source has none left (calling `between_batches`
    /// after each batch); then `CLUSTER SETSLOT <slot> NODE <target>` on the
    /// target, the source and every other master. Returns the number of
    /// MIGRATE batches.
    pub fn migrate_slot(
        &self,
        slot: u16,
        source: &ClusterNode,
        target: &ClusterNode,
        batch: usize,
        mut between_batches: impl FnMut(),
    ) -> usize {
        let mut src = self.conn_to(source);
        let mut tgt = self.conn_to(target);
        let setslot = |c: &mut redis::Connection, how: &str, id: Option<&str>| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(how);
            if let Some(id) = id {
                cmd.arg(id);
            }
            let _: () = cmd
                .query(c)
                .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {how} {id:?}: {e}"));
        };
        setslot(&mut tgt, "IMPORTING", Some(&source.id));
        setslot(&mut src, "MIGRATING", Some(&target.id));
        let mut batches = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(batch)
                .query(&mut src)
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg(&target.host)
                .arg(target.port)
                .arg("")
                .arg(0)
                .arg(5_000);
            if let Some((user, pass)) = self.auth.strip_suffix('@').and_then(|a| a.split_once(':'))
            {
                if user.is_empty() {
                    migrate.arg("AUTH").arg(pass);
                } else {
                    migrate.arg("AUTH2").arg(user).arg(pass);
                }
            }
            let reply: String = migrate
                .arg("KEYS")
                .arg(&keys)
                .query(&mut src)
                .unwrap_or_else(|e| panic!("MIGRATE to {}: {e}", target.addr()));
            assert_eq!(reply, "OK", "MIGRATE");
            batches += 1;
            between_batches();
        }
        setslot(&mut tgt, "NODE", Some(&target.id));
        setslot(&mut src, "NODE", Some(&target.id));
        for m in self
            .masters()
            .iter()
            .filter(|m| m.id != source.id && m.id != target.id)
        {
            setslot(&mut self.conn_to(m), "NODE", Some(&target.id));
        }
        batches
    }

    /// Last log lines of our own nodes (for failure messages).
    pub fn log_tails(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("--- node :{} ---\n{}", s.port(), s.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Delete every key under this handle's prefix (external clusters: a test
    /// run leaves nothing behind; buckets with huge periods would never expire).
    fn delete_own_keys(&self) -> redis::RedisResult<usize> {
        let pattern = format!("{}:*", self.prefix);
        let mut deleted = 0;
        for m in self.masters() {
            let mut c = self
                .node_client(&m.host, m.port)
                .get_connection_with_timeout(Duration::from_secs(2))?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut c)?;
                for k in keys {
                    // One key per DEL: keys of different slots must not share a command.
                    deleted += redis::cmd("DEL").arg(k).query::<usize>(&mut c)?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Own servers are SIGKILLed by their own Drop (tests/common).
        if self.external {
            match self.delete_own_keys() {
                Ok(n) => eprintln!(
                    "deleted the {n} test keys {}:* from the cluster",
                    self.prefix
                ),
                Err(e) => eprintln!("could not delete the test keys {}:*: {e}", self.prefix),
            }
        }
    }
}

/// `shield-test:<pid>-<n>-<nanos>`: unique per Cluster handle, and without
/// braces, so it never acts as a hash tag.
fn unique_prefix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "shield-test:{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

// ---------------------------------------------------------------------------
// Atomic slot migration (ASM)
// ---------------------------------------------------------------------------

/// The atomic slot migration a server offers, found by asking it (see
/// [`Cluster::atomic_slot_migration`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtomicSlotMigration {
    /// Valkey 9+: `CLUSTER MIGRATESLOTS SLOTSRANGE s s NODE <target>`, sent to
    /// the source; observed with `CLUSTER GETSLOTMIGRATIONS` (jobs end in
    /// `success`, `failed` or `cancelled`).
    Valkey,
    /// Redis 8.4+: `CLUSTER MIGRATION IMPORT s s`, sent to the target;
    /// observed with `CLUSTER MIGRATION STATUS ID <task>` (tasks end in
    /// `completed`, `failed` or `canceled`).
    Redis,
    /// Neither: the server's answers to `CLUSTER MIGRATESLOTS` and to
    /// `CLUSTER MIGRATION` (both "unknown subcommand").
    Unsupported {
        migrateslots: String,
        migration: String,
    },
}

/// What [`Cluster::migrate_slot_atomically`] did.
#[derive(Clone, Debug)]
pub struct SlotMigration {
    pub kind: AtomicSlotMigration,
    /// The job's name (Valkey) or task id (Redis).
    pub task: String,
    pub slot: u16,
    pub source: ClusterNode,
    pub target: ClusterNode,
    /// From the command to every node seeing the target as the slot's owner.
    pub elapsed: Duration,
    /// How long the hand-over was held back while the source streamed the
    /// slot's writes to the target (zero when not held).
    pub held: Duration,
    /// The source's last status of the job (`state`, `message`/`last_error`...).
    pub source_status: BTreeMap<String, String>,
    /// The target's last status of the job.
    pub target_status: BTreeMap<String, String>,
}

/// `CLUSTER <subcommand>` without arguments: `Ok(error text)` when the server
/// knows the subcommand (it answers with an arity error), `Err(error text)`
/// when it does not ("unknown subcommand"). Any other answer is a panic: this
/// must never run a migration, nor mistake another error for "absent".
fn probe_cluster_subcommand(c: &mut redis::Connection, sub: &str) -> Result<String, String> {
    match redis::cmd("CLUSTER").arg(sub).query::<redis::Value>(c) {
        Ok(v) => panic!("CLUSTER {sub} without arguments answered {v:?}"),
        Err(e) => {
            let text = e.to_string();
            let lower = text.to_lowercase();
            if lower.contains("unknown subcommand") {
                Err(text)
            } else if lower.contains("wrong number of arguments") {
                Ok(text)
            } else {
                panic!("unexpected answer to CLUSTER {sub} without arguments: {text}")
            }
        }
    }
}

/// A reply value as text (bulk and simple strings, integers; "" for nil).
fn value_text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Okay => "OK".into(),
        redis::Value::Nil => String::new(),
        other => format!("{other:?}"),
    }
}

/// The entries of a `CLUSTER GETSLOTMIGRATIONS` / `CLUSTER MIGRATION STATUS`
/// reply: an array of field/value lists (RESP2) or maps (RESP3).
pub fn parse_migration_entries(reply: &redis::Value) -> Vec<BTreeMap<String, String>> {
    let redis::Value::Array(entries) = reply else {
        panic!("slot migration status is not an array: {reply:?}");
    };
    entries
        .iter()
        .map(|entry| match entry {
            redis::Value::Array(flat) => flat
                .chunks(2)
                .map(|kv| {
                    (
                        value_text(&kv[0]),
                        kv.get(1).map(value_text).unwrap_or_default(),
                    )
                })
                .collect(),
            redis::Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| (value_text(k), value_text(v)))
                .collect(),
            other => panic!("slot migration entry is not a list or map: {other:?}"),
        })
        .collect()
}

impl Cluster {
    /// Which atomic slot migration the nodes offer, asked of every master
    /// (they must agree): `CLUSTER MIGRATESLOTS` and `CLUSTER MIGRATION`
    /// without arguments, which a server that has them answers with an arity
    /// error, and one that has not with "unknown subcommand".
    pub fn atomic_slot_migration(&self) -> AtomicSlotMigration {
        let mut found: Option<(String, AtomicSlotMigration)> = None;
        for m in self.masters() {
            let mut c = self.conn_to(&m);
            let kind = match (
                probe_cluster_subcommand(&mut c, "MIGRATESLOTS"),
                probe_cluster_subcommand(&mut c, "MIGRATION"),
            ) {
                (Ok(_), Err(_)) => AtomicSlotMigration::Valkey,
                (Err(_), Ok(_)) => AtomicSlotMigration::Redis,
                (Err(migrateslots), Err(migration)) => AtomicSlotMigration::Unsupported {
                    migrateslots,
                    migration,
                },
                (Ok(a), Ok(b)) => panic!(
                    "{} has both CLUSTER MIGRATESLOTS ({a}) and CLUSTER MIGRATION ({b})",
                    m.addr()
                ),
            };
            match &found {
                None => found = Some((m.addr(), kind)),
                Some((addr, k)) if std::mem::discriminant(k) != std::mem::discriminant(&kind) => {
                    panic!("{addr} offers {k:?} but {} offers {kind:?}", m.addr())
                }
                Some(_) => {}
            }
        }
        found.expect("no master").1
    }

    /// Move `slot` from its owner to `target` with the server's own atomic
    /// slot migration (see [`AtomicSlotMigration`]), and poll (no fixed
    /// sleeps) until the job has succeeded on both sides and every running
    /// node sees `target` as the slot's only owner, then until the cluster is
    /// healthy. Panics with the job's status and the node logs if the server
    /// refuses the migration or the job fails.
    pub fn migrate_slot_atomically(&self, slot: u16, target: &ClusterNode) -> SlotMigration {
        self.run_atomic_migration(slot, target, None)
    }

    /// Like [`Cluster::migrate_slot_atomically`], but the hand-over is held
    /// back until `while_streaming` returns: the source has sent the slot's
    /// snapshot and streams every further write of the slot to the target,
    /// while still serving the slot's clients. It is held with the servers'
    /// debug switches (`DEBUG SLOTMIGRATION PREVENT-PAUSE` on Valkey,
    /// `DEBUG ASM-FAILPOINT migrate-main-channel handoff-prep` on Redis;
    /// `enable-debug-command` is on in the nodes this harness starts).
    pub fn migrate_slot_atomically_holding(
        &self,
        slot: u16,
        target: &ClusterNode,
        while_streaming: impl FnOnce(),
    ) -> SlotMigration {
        let mut f = Some(while_streaming);
        let mut call = || (f.take().expect("called once"))();
        self.run_atomic_migration(slot, target, Some(&mut call))
    }

    fn run_atomic_migration(
        &self,
        slot: u16,
        target: &ClusterNode,
        while_streaming: Option<&mut dyn FnMut()>,
    ) -> SlotMigration {
        let kind = self.atomic_slot_migration();
        let source = self.owner_of_slot(slot);
        assert_ne!(source.id, target.id, "slot {slot} is already on the target");
        assert!(
            target.is_master(),
            "target {} is not a master",
            target.addr()
        );
        let mut src = self.conn_to(&source);
        let mut tgt = self.conn_to(target);
        let started = Instant::now();
        let (task, held, source_status, target_status) = match &kind {
            AtomicSlotMigration::Valkey => {
                self.valkey_migration(slot, &source, target, &mut src, &mut tgt, while_streaming)
            }
            AtomicSlotMigration::Redis => {
                self.redis_migration(slot, &source, target, &mut src, &mut tgt, while_streaming)
            }
            AtomicSlotMigration::Unsupported {
                migrateslots,
                migration,
            } => panic!(
                "this server has no atomic slot migration: CLUSTER MIGRATESLOTS: \
                 {migrateslots}; CLUSTER MIGRATION: {migration}"
            ),
        };
        // Every running node's own view: the target serves the slot, nobody else does.
        let what = format!(
            "every node to see {} as the owner of slot {slot}",
            target.addr()
        );
        wait_until(HEALTHY_TIMEOUT, &what, || {
            self.alive_seeds().iter().all(|(h, p)| {
                self.try_topology_of(h, *p).is_ok_and(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| n.is_master() && n.serves_slot(slot))
                        .map(|n| n.id.as_str())
                        .eq([target.id.as_str()])
                })
            })
        });
        let elapsed = started.elapsed();
        self.wait_healthy(&what);
        SlotMigration {
            kind,
            task,
            slot,
            source,
            target: target.clone(),
            elapsed,
            held,
            source_status,
            target_status,
        }
    }

    /// Poll `status` until it returns Some(final entry); panic on timeout.
    fn poll_job(
        &self,
        what: &str,
        mut status: impl FnMut() -> Option<BTreeMap<String, String>>,
    ) -> BTreeMap<String, String> {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            if let Some(entry) = status() {
                return entry;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {HEALTHY_TIMEOUT:?} waiting for {what}\n--- node logs ---\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Valkey: `CLUSTER MIGRATESLOTS` on the source; the job is the new
    /// `CLUSTER GETSLOTMIGRATIONS` entry of the source (EXPORT) and of the
    /// target (IMPORT, same name).
    #[allow(clippy::type_complexity)]
    fn valkey_migration(
        &self,
        slot: u16,
        source: &ClusterNode,
        target: &ClusterNode,
        src: &mut redis::Connection,
        tgt: &mut redis::Connection,
        while_streaming: Option<&mut dyn FnMut()>,
    ) -> (
        String,
        Duration,
        BTreeMap<String, String>,
        BTreeMap<String, String>,
    ) {
        let jobs = |c: &mut redis::Connection| -> Vec<BTreeMap<String, String>> {
            let reply: redis::Value = redis::cmd("CLUSTER")
                .arg("GETSLOTMIGRATIONS")
                .query(c)
                .expect("CLUSTER GETSLOTMIGRATIONS");
            parse_migration_entries(&reply)
        };
        let field = |e: &BTreeMap<String, String>, f: &str| e.get(f).cloned().unwrap_or_default();
        let debug_hold = |c: &mut redis::Connection, on: bool| {
            let _: () = redis::cmd("DEBUG")
                .arg("SLOTMIGRATION")
                .arg("PREVENT-PAUSE")
                .arg(u8::from(on))
                .query(c)
                .unwrap_or_else(|e| panic!("DEBUG SLOTMIGRATION PREVENT-PAUSE {on}: {e}"));
        };
        let known: Vec<String> = jobs(src).iter().map(|e| field(e, "name")).collect();
        if while_streaming.is_some() {
            debug_hold(src, true);
        }
        let reply: redis::RedisResult<String> = redis::cmd("CLUSTER")
            .arg("MIGRATESLOTS")
            .arg("SLOTSRANGE")
            .arg(slot)
            .arg(slot)
            .arg("NODE")
            .arg(&target.id)
            .query(src);
        match reply {
            Ok(ok) => assert_eq!(ok, "OK", "CLUSTER MIGRATESLOTS"),
            Err(e) => panic!(
                "{} refused CLUSTER MIGRATESLOTS SLOTSRANGE {slot} {slot} NODE {}: {e}",
                source.addr(),
                target.id
            ),
        }
        let range = format!("{slot}-{slot}");
        let job = |c: &mut redis::Connection, operation: &str, name: Option<&str>| {
            jobs(c).into_iter().find(|e| {
                field(e, "operation") == operation
                    && field(e, "slot_ranges") == range
                    && match name {
                        Some(n) => field(e, "name") == n,
                        None => !known.contains(&field(e, "name")),
                    }
            })
        };
        let failed = |e: &BTreeMap<String, String>| {
            matches!(field(e, "state").as_str(), "failed" | "cancelled")
        };
        let new_job = self.poll_job("the EXPORT job of CLUSTER MIGRATESLOTS", || {
            job(src, "EXPORT", None)
        });
        let name = field(&new_job, "name");
        let fail = |side: &str, e: &BTreeMap<String, String>| -> ! {
            panic!(
                "slot migration {name} of slot {slot} {} -> {} failed on the {side}: {e:?}\n\
                 --- node logs ---\n{}",
                source.addr(),
                target.addr(),
                self.log_tails()
            )
        };
        let mut held = Duration::ZERO;
        if let Some(during) = while_streaming {
            // The snapshot is on the target; the source streams the slot's
            // writes and waits for leave to pause them and hand over.
            let e = self.poll_job("the migration to stream the slot's writes", || {
                let e = job(src, "EXPORT", Some(&name))?;
                match field(&e, "state").as_str() {
                    "waiting-to-pause" => Some(e),
                    "success" => panic!("the migration was not held: {e:?}"),
                    _ if failed(&e) => fail("source", &e),
                    _ => None,
                }
            });
            let state = field(&e, "state");
            let holding = Instant::now();
            during();
            held = holding.elapsed();
            let still = job(src, "EXPORT", Some(&name)).expect("the job");
            assert_eq!(
                field(&still, "state"),
                state,
                "the migration did not stay held while streaming: {still:?}"
            );
            debug_hold(src, false);
        }
        let source_status = self.poll_job("the EXPORT job to succeed", || {
            let e = job(src, "EXPORT", Some(&name))?;
            if failed(&e) {
                fail("source", &e);
            }
            (field(&e, "state") == "success").then_some(e)
        });
        let target_status = self.poll_job("the IMPORT job to succeed", || {
            let e = job(tgt, "IMPORT", Some(&name))?;
            if failed(&e) {
                fail("target", &e);
            }
            (field(&e, "state") == "success").then_some(e)
        });
        (name, held, source_status, target_status)
    }

    /// Redis: `CLUSTER MIGRATION IMPORT` on the target, which answers the task
    /// id; `CLUSTER MIGRATION STATUS ID <task>` on both sides.
    #[allow(clippy::type_complexity)]
    fn redis_migration(
        &self,
        slot: u16,
        source: &ClusterNode,
        target: &ClusterNode,
        src: &mut redis::Connection,
        tgt: &mut redis::Connection,
        while_streaming: Option<&mut dyn FnMut()>,
    ) -> (
        String,
        Duration,
        BTreeMap<String, String>,
        BTreeMap<String, String>,
    ) {
        let failpoint = |c: &mut redis::Connection, channel: &str, state: &str| {
            let _: () = redis::cmd("DEBUG")
                .arg("ASM-FAILPOINT")
                .arg(channel)
                .arg(state)
                .query(c)
                .unwrap_or_else(|e| panic!("DEBUG ASM-FAILPOINT {channel:?} {state:?}: {e}"));
        };
        if while_streaming.is_some() {
            // The source does not enter the hand-over (write pause) while set.
            failpoint(src, "migrate-main-channel", "handoff-prep");
        }
        let task: String = redis::cmd("CLUSTER")
            .arg("MIGRATION")
            .arg("IMPORT")
            .arg(slot)
            .arg(slot)
            .query(tgt)
            .unwrap_or_else(|e| {
                panic!(
                    "{} refused CLUSTER MIGRATION IMPORT {slot} {slot}: {e}",
                    target.addr()
                )
            });
        let field = |e: &BTreeMap<String, String>, f: &str| e.get(f).cloned().unwrap_or_default();
        let status = |c: &mut redis::Connection| -> Option<BTreeMap<String, String>> {
            let reply: redis::Value = redis::cmd("CLUSTER")
                .arg("MIGRATION")
                .arg("STATUS")
                .arg("ID")
                .arg(&task)
                .query(c)
                .expect("CLUSTER MIGRATION STATUS");
            parse_migration_entries(&reply).into_iter().next()
        };
        let failed = |e: &BTreeMap<String, String>| {
            matches!(field(e, "state").as_str(), "failed" | "canceled")
        };
        let fail = |side: &str, e: &BTreeMap<String, String>| -> ! {
            panic!(
                "slot migration task {task} of slot {slot} {} -> {} failed on the {side}: {e:?}\n\
                 --- node logs ---\n{}",
                source.addr(),
                target.addr(),
                self.log_tails()
            )
        };
        let mut held = Duration::ZERO;
        if let Some(during) = while_streaming {
            // Snapshot sent; the source streams the slot's writes.
            let e = self.poll_job("the migration to stream the slot's writes", || {
                let e = status(src)?;
                match field(&e, "state").as_str() {
                    "send-stream" => Some(e),
                    "completed" => panic!("the migration was not held: {e:?}"),
                    _ if failed(&e) => fail("source", &e),
                    _ => None,
                }
            });
            let holding = Instant::now();
            during();
            held = holding.elapsed();
            let still = status(src).expect("the task");
            assert_eq!(
                field(&still, "state"),
                field(&e, "state"),
                "the migration did not stay held while streaming: {still:?}"
            );
            failpoint(src, "", "");
        }
        let target_status = self.poll_job("the import task to complete", || {
            let e = status(tgt)?;
            if failed(&e) {
                fail("target", &e);
            }
            (field(&e, "state") == "completed").then_some(e)
        });
        let source_status = self.poll_job("the migrate task to complete", || {
            let e = status(src)?;
            if failed(&e) {
                fail("source", &e);
            }
            (field(&e, "state") == "completed").then_some(e)
        });
        (task, held, source_status, target_status)
    }
}
