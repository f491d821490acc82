//! Throw-away `redis-server` / `valkey-server` processes on free loopback
//! ports, each in its own temp dir, with the freshly built module loaded.
//! Every test gets its own servers, so tests stay parallel-safe. Servers are
//! stopped by PID in `Drop`, even when a test panics (the temp dir is then
//! kept and its path printed).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout of connections from `conn()`: a hung server fails the test instead of CI.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository root: the workspace's (and the module's) directory, one
/// level above this kit.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kit lives in a directory of the repository")
}

/// The first of `names` found in a directory of PATH.
pub(crate) fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The server binary under test: `$SHIELD_SERVER_BIN` (absolute, or relative
/// to the current directory or the repository root), else `redis-server`,
/// else `valkey-server` on PATH.
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SHIELD_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        let in_repo = repo_root().join(&bin);
        return [bin.clone(), in_repo]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("SHIELD_SERVER_BIN={} does not exist", bin.display()));
    }
    find_on_path(&["redis-server", "valkey-server"]).unwrap_or_else(|| {
        panic!(
            "no redis-server or valkey-server found (set SHIELD_SERVER_BIN or put one on PATH). \
             Get one with `apt-get install redis-server`, or `bash scripts/install-servers.sh` then \
             `SHIELD_SERVER_BIN=.servers/redis-8.2/redis-server cargo test`"
        )
    })
}

/// The module to load: `$SHIELD_MODULE`, else the root package's cdylib,
/// built fresh: `cargo test` does not build the cdylib that the tests load,
/// so the first call runs `cargo build --lib` on the root Cargo.toml (same
/// profile as the running test or bench binary; a no-op when it is up to
/// date) and returns `target/<profile>/libredis_shield.so`.
pub fn module_path() -> PathBuf {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("SHIELD_MODULE") {
                let p = PathBuf::from(p);
                assert!(p.is_file(), "SHIELD_MODULE={} does not exist", p.display());
                return p;
            }
            let exe = std::env::current_exe().expect("current_exe");
            // target/<profile>/deps/<test-bin> -> target/<profile>/libredis_shield.so
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test binary dir")
                .to_path_buf();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "--lib", "--quiet", "--package", "redis-shield"])
                .arg("--manifest-path")
                .arg(repo_root().join("Cargo.toml"));
            if dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build --lib");
            assert!(status.success(), "cargo build --lib failed: {status}");
            let path = dir.join("libredis_shield.so");
            assert!(
                path.is_file(),
                "cargo build --lib did not produce {}",
                path.display()
            );
            path
        })
        .clone()
}

/// `(flavor, version)` of a server binary, from `--version`, e.g. `("valkey", "9.1.2")`.
fn binary_version(bin: &Path) -> (String, String) {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, (String, String)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(bin) {
        return v.clone();
    }
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {} --version: {e}", bin.display()));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let flavor = if text.to_lowercase().contains("valkey") {
        "valkey"
    } else {
        "redis"
    };
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("0");
    let v = (flavor.to_string(), version.to_string());
    cache.lock().unwrap().insert(bin.to_path_buf(), v.clone());
    v
}

/// Options for `Server::start`. `ServerOptions::default()` loads the module, AOF off.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub with_module: bool,
    pub appendonly: bool,
    /// Port of a master on 127.0.0.1 to replicate from.
    pub replica_of: Option<u16>,
    /// The server binary; `None`: [`server_binary()`].
    pub binary: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            with_module: true,
            appendonly: false,
            replica_of: None,
            binary: None,
            extra_args: vec![],
        }
    }
}

impl ServerOptions {
    pub fn without_module(mut self) -> Self {
        self.with_module = false;
        self
    }
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }
    pub fn replica_of(mut self, master_port: u16) -> Self {
        self.replica_of = Some(master_port);
        self
    }
    pub fn binary(mut self, bin: impl Into<PathBuf>) -> Self {
        self.binary = Some(bin.into());
        self
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
    /// The binary these options start.
    pub fn server_binary(&self) -> PathBuf {
        self.binary.clone().unwrap_or_else(server_binary)
    }
}

/// A running server process owned by one test.
pub struct Server {
    opts: ServerOptions,
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A loopback port that is free, and whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if port < 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// `<pid>-<n>-<nanos>`: unique in this process (and, with the pid, on the machine).
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{n}-{nanos}", std::process::id())
}

fn unique_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redis-shield-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("create server temp dir");
    dir
}

/// Last `lines` lines of a file ("" if it can't be read).
fn tail(path: &Path, lines: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
        let _ = f.read_to_end(&mut bytes);
    }
    let s = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Poll `cond` every 10 ms until it holds; panic naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Value of `field:` in an INFO reply.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// `("redis" | "valkey", version)` of a running server, from `INFO server`.
pub fn server_version_info(conn: &mut impl redis::ConnectionLike) -> (String, String) {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(conn)
        .expect("INFO server");
    // Valkey also reports redis_version (a compat value), so look for Valkey first.
    match info_field(&info, "valkey_version") {
        Some(v) => ("valkey".into(), v),
        None => (
            "redis".into(),
            info_field(&info, "redis_version").expect("redis_version"),
        ),
    }
}

/// `INFO replication` of a server, or None if it can't be had right now.
fn replication_info(server: &Server) -> Option<String> {
    let mut c = server
        .client()
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    redis::cmd("INFO").arg("replication").query(&mut c).ok()
}

/// Whether an `INFO replication` reply of a master lists the replica on
/// `port` as `state=online` (so that `WAIT` counts it).
pub(crate) fn lists_replica_online(master_info: &str, port: u16) -> bool {
    let online = format!("port={port},state=online");
    master_info
        .lines()
        .any(|l| l.starts_with("slave") && l.contains(&online))
}

/// Whether an `INFO replication` reply of a replica says that its link to
/// the master is up and the initial sync is done.
pub(crate) fn replica_in_sync(replica_info: &str) -> bool {
    info_field(replica_info, "master_link_status").as_deref() == Some("up")
        && info_field(replica_info, "master_sync_in_progress").as_deref() == Some("0")
}

/// Wait until `replica` has finished its initial sync from `master`, as seen from both sides.
/// (The master must list it as `state=online` too, or a `WAIT` would not count it yet.)
pub fn wait_for_replication(master: &Server, replica: &Server) {
    let what = format!(
        "replica :{} to sync from :{}",
        replica.port(),
        master.port()
    );
    wait_until(Duration::from_secs(30), &what, || {
        let (Some(r), Some(m)) = (replication_info(replica), replication_info(master)) else {
            return false;
        };
        info_field(&r, "master_port") == Some(master.port().to_string())
            && replica_in_sync(&r)
            && lists_replica_online(&m, replica.port())
    });
}

impl Server {
    /// Start a server and wait until it answers PING. Panics (with the log tail) on failure.
    pub fn start(opts: ServerOptions) -> Server {
        // Fail early, before making a temp dir, if there is no server or module.
        let bin = opts.server_binary();
        if opts.with_module {
            module_path();
        }
        let dir = unique_dir();
        let mut server = Server {
            opts,
            bin,
            port: 0,
            dir,
            child: None,
        };
        for attempt in 1..=5 {
            server.port = free_port();
            for f in ["server.log", "stdout.log"] {
                let _ = std::fs::remove_file(server.dir.join(f)); // a failed attempt's logs
            }
            match server.spawn_and_wait() {
                Ok(()) => return server,
                // Port grabbed by someone else between free_port() and bind: try another.
                Err(e) if attempt < 5 && e.contains("port in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// Start a replica of `master` with `opts` (its `replica_of` is set
    /// here) and wait until it has synced, as seen from both sides.
    pub fn start_replica(master: &Server, opts: ServerOptions) -> Server {
        let replica = Server::start(opts.replica_of(master.port()));
        wait_for_replication(master, &replica);
        replica
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let (flavor, version) = binary_version(&self.bin);
        let major: u32 = version
            .split('.')
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let aof = if self.opts.appendonly { "yes" } else { "no" };
        let mut args = format!(
            "--port {} --bind 127.0.0.1 --daemonize no --appendonly {aof} \
             --repl-diskless-sync no --repl-diskless-sync-delay 0 --rdb-del-sync-files yes",
            self.port
        );
        // Replication: disk-based full syncs, because after a diskless one Redis 7.0 streams
        // nothing to the replica until its first periodic ACK, so a `WAIT` right after
        // `wait_for_replication` took ~1 s. The delay of 0 only matters if a test turns
        // diskless sync back on; rdb-del-sync-files removes the sync's dump.rdb (when neither
        // AOF nor RDB saving is on), so a restart still starts empty.
        if flavor == "valkey" || major >= 7 {
            args += " --enable-debug-command yes";
        }
        if let Some(master) = self.opts.replica_of {
            args += &format!(" --replicaof 127.0.0.1 {master}");
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(args.split_whitespace()).args(["--save", ""]);
        cmd.arg("--dir").arg(&self.dir);
        cmd.arg("--logfile").arg(self.dir.join("server.log"));
        if self.opts.with_module {
            cmd.arg("--loadmodule").arg(module_path());
        }
        cmd.args(&self.opts.extra_args);
        // Errors printed before the log file is opened (bad config) go to stdout/stderr.
        let out = std::fs::File::create(self.dir.join("stdout.log")).expect("create stdout.log");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {:?}: {e}", self.bin))?;
        let pid = child.id();
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let log = self.log_tail();
                let in_use = if log.contains("Address already in use") {
                    " (port in use)"
                } else {
                    ""
                };
                return Err(format!(
                    "server on :{} exited{in_use} with {status}:\n{log}",
                    self.port
                ));
            }
            if let Some(server_pid) = self.ping_pid() {
                if server_pid == pid {
                    return Ok(());
                }
                self.kill_hard(); // PONG came from another process on "our" port.
                return Err(format!(
                    "port in use: :{} answered by pid {server_pid}",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                self.kill_hard();
                return Err(format!(
                    "server on :{} not ready in {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PING the port; on PONG return the answering server's process_id.
    fn ping_pid(&self) -> Option<u32> {
        let mut c = self
            .client()
            .get_connection_with_timeout(Duration::from_millis(200))
            .ok()?;
        c.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let pong: String = redis::cmd("PING").query(&mut c).ok()?;
        if pong != "PONG" {
            return None;
        }
        let info: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
        info_field(&info, "process_id")?.parse().ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis client")
    }
    /// A new connection (30 s read/write timeouts).
    pub fn conn(&self) -> redis::Connection {
        let c = self
            .client()
            .get_connection()
            .expect("connect to test server");
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        c
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }
    /// The whole server.log ("" if it can't be read).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
    /// Last lines of server.log (and of stdout/stderr, if anything was printed there).
    pub fn log_tail(&self) -> String {
        let out = tail(&self.dir.join("stdout.log"), 20);
        let log = tail(&self.dir.join("server.log"), 40);
        if out.is_empty() {
            log
        } else {
            format!("{log}\n--- stdout/stderr ---\n{out}")
        }
    }

    /// Graceful stop: `SHUTDOWN` (flushes the AOF), falling back to SIGTERM; waits for exit.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let sigterm = || {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        };
        match self
            .client()
            .get_connection_with_timeout(Duration::from_secs(1))
        {
            // On success the server just closes the connection, so an error is expected here.
            Ok(mut c) => drop(redis::cmd("SHUTDOWN").query::<()>(&mut c)),
            Err(_) => sigterm(),
        }
        let started = Instant::now();
        let mut termed = false;
        while self.child.as_mut().unwrap().try_wait().unwrap().is_none() {
            if !termed && started.elapsed() > STOP_TIMEOUT / 2 {
                sigterm();
                termed = true;
            }
            if started.elapsed() > STOP_TIMEOUT {
                self.kill_hard();
                panic!(
                    "server pid {pid} did not stop in {STOP_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = None;
    }

    /// Graceful stop, then start again with the same dir, port and options.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait() {
            panic!("restart failed: {e}");
        }
    }

    /// SIGKILL the server (no AOF flush, no goodbye) and reap it.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_hard();
        if std::thread::panicking() {
            eprintln!(
                "test failed: kept server dir {} (port {})",
                self.dir.display(),
                self.port
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// [`read_aof`] until `done` holds for its text, or 10 s have passed;
/// returns the last text read (the caller asserts on it). With `appendfsync
/// everysec` the server postpones writing its AOF buffer to the file while a
/// background fsync runs (up to 2 s), but not its replies: a reply can reach
/// the client before the file has the write (seen on Redis 7.0 and Valkey
/// 9.1 in CI). Poll, do not read once.
pub fn read_aof_when(server: &Server, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = read_aof(server);
        if done(&text) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything in the server's append-only files (the base and incremental
/// parts of a multi-part AOF, or a single appendonly.aof), as text.
pub fn read_aof(server: &Server) -> String {
    let mut text = String::new();
    for dir in [
        server.dir().join("appendonlydir"),
        server.dir().to_path_buf(),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "aof"))
            .collect();
        files.sort();
        for f in files {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(f).unwrap_or_default(),
            ));
        }
    }
    assert!(
        !text.is_empty(),
        "no AOF found in {}",
        server.dir().display()
    );
    text
}
