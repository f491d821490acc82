//! A real Redis Cluster (3 masters + 3 replicas) for the cluster tests and
//! the benchmark: the one way to start one from Rust.
//!
//! * `Cluster::for_test()` uses the cluster named by `REDIS_CLUSTER_URLS`
//!   (comma-separated `redis://host:port` seeds) when it is set, and otherwise
//!   starts its own: six [`Server`]s (free loopback ports whose cluster bus
//!   port, +10000, is free too; each in its own temp dir; the freshly built
//!   module loaded; every option of `cluster-node.conf`), joined with
//!   `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, and
//!   waited for by polling until every node reports `cluster_state:ok`, all
//!   nodes agree on the topology and every replica is in sync.
//! * `Cluster::own(why)` always starts its own cluster: for tests that SIGKILL
//!   or restart server processes, which is only possible on processes this test
//!   started. When `REDIS_CLUSTER_URLS` is set it says so on stderr.
//! * `Cluster::start_with(ClusterOptions)` starts one with other options
//!   (the benchmark: no AOF, a longer node timeout).
//!
//! Own servers are stopped by PID when the `Cluster` is dropped, also when the
//! test panics (their directories are then kept and printed). On an external
//! cluster, the keys a test created (all under its unique `key()` prefix) are
//! deleted when the `Cluster` is dropped.

mod config;
mod health;
mod resharding;
mod topology;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};

use crate::server::{server_binary, unique_suffix, Server, ServerOptions, IO_TIMEOUT};

pub use config::{node_conf_options, node_conf_path, parse_conf, redis_cli};
pub use resharding::{parse_migration_entries, AtomicSlotMigration, SlotMigration};
pub use topology::{parse_cluster_nodes, ClusterNode};

/// Nodes of a self-started cluster: 3 masters, each with 1 replica.
pub const NODES: usize = 6;
pub const MASTERS: usize = 3;
/// Environment variable naming an existing cluster to test instead.
pub const CLUSTER_URLS_ENV: &str = "REDIS_CLUSTER_URLS";

/// How long a cluster may take to become healthy (after creation, a failover,
/// a restart or a resharding) before the test fails.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a cluster of our own. The default is the cluster of the
/// tests: every option of `cluster-node.conf` as it is. Others:
/// `ClusterOptions { appendonly: Some(false), ..Default::default() }`.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// `cluster-node-timeout` in ms instead of cluster-node.conf's.
    pub node_timeout_ms: Option<u64>,
    /// `appendonly` instead of cluster-node.conf's (`yes`).
    pub appendonly: Option<bool>,
    /// The server binary; `None`: [`server_binary()`].
    pub binary: Option<PathBuf>,
    /// Start the nodes without the module (for the Functions library, which
    /// the test then loads with `FUNCTION LOAD`).
    pub without_module: bool,
}

impl ClusterOptions {
    /// The options of every node: cluster-node.conf's, with the overrides.
    fn server_options(&self) -> ServerOptions {
        let conf_aof = node_conf_options()
            .iter()
            .any(|(name, value)| name == "appendonly" && value == "yes");
        let mut opts = ServerOptions::default().appendonly(self.appendonly.unwrap_or(conf_aof));
        if let Some(bin) = &self.binary {
            opts = opts.binary(bin);
        }
        if self.without_module {
            opts = opts.without_module();
        }
        for (name, value) in node_conf_options() {
            let value = match (name.as_str(), self.node_timeout_ms, self.appendonly) {
                ("cluster-node-timeout", Some(ms), _) => ms.to_string(),
                ("appendonly", _, Some(on)) => if on { "yes" } else { "no" }.to_string(),
                _ => value,
            };
            opts = opts.arg(format!("--{name}")).arg(value);
        }
        opts
    }
}

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

/// `shield-test:<pid>-<n>-<nanos>`: unique per Cluster handle, and without
/// braces, so it never acts as a hash tag.
fn unique_prefix() -> String {
    format!("shield-test:{}", unique_suffix())
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
        Cluster::own_with(why, ClusterOptions::default())
    }

    /// Like [`Cluster::own`], with `options` (for example a cluster without
    /// the module).
    pub fn own_with(why: &str, options: ClusterOptions) -> Cluster {
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
        Cluster::start_with(options)
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

    /// Start six servers with the module and the options of
    /// cluster-node.conf, and join them into a cluster.
    pub fn start() -> Cluster {
        Cluster::start_with(ClusterOptions::default())
    }

    /// Start six servers with the module (unless `options.without_module`)
    /// and `options`, and join them into a cluster; return once it is healthy. Panics (with the node logs) if it
    /// does not get there.
    pub fn start_with(options: ClusterOptions) -> Cluster {
        let started = Instant::now();
        let cli = redis_cli(); // fail early with a clear message if missing
        let opts = options.server_options();
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

    /// Our own server processes, in the order they were started (none for an
    /// external cluster).
    pub fn servers(&self) -> &[Server] {
        &self.servers
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
    pub(crate) fn alive_seeds(&self) -> Vec<(String, u16)> {
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

    pub(crate) fn node_client(&self, host: &str, port: u16) -> redis::Client {
        redis::Client::open(format!("redis://{}{host}:{port}/", self.auth)).expect("node client")
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
        // Own servers are SIGKILLed by their own Drop (crate::server).
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
