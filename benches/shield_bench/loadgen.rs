//! The load generator: closed-loop virtual clients over raw RESP, driven by
//! one thread and one epoll set (like `redis-benchmark`'s event loop), so it
//! needs a single core.
//!
//! A *plan* is what one client sends before it starts its next plan: a list of
//! stages run one after another; each stage writes one pre-serialized buffer
//! to each of its connections at once and is done when all their replies are
//! in. A plan is either a pipeline of `requests` single-connection requests of
//! `replies_per_request` replies each (each request's latency ends at its own
//! last reply), or one request spanning every stage (a cluster request).
//! Replies are only scanned for their end (and for errors and denials), never
//! converted into values.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use shield_testkit::Rng;

// ---------------------------------------------------------------- RESP

/// Appends one command as a RESP array of bulk strings.
pub fn push_cmd(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_uint(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        push_uint(out, a.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

pub fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Writes `n` as exactly `dst.len()` zero-padded decimal digits.
#[inline]
pub fn write_digits(dst: &mut [u8], mut n: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// What the load generator keeps of one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// RESP type byte (`+ - : $ *` ...).
    pub kind: u8,
    /// The integer of a `:` reply, or of an array's first element when that is an integer.
    pub int: Option<i64>,
    /// The length of an aggregate reply (a map's: its entries); `None` for
    /// other replies and for a nil array.
    pub len: Option<i64>,
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == b'\r' && buf[i + 1] == b'\n' {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn parse_int(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parses one complete reply at `buf[pos..]`: `Ok(Some((end, reply)))`, or
/// `Ok(None)` if it is not complete yet.
pub fn parse_reply(buf: &[u8], pos: usize) -> Result<Option<(usize, Reply)>, String> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let kind = buf[pos];
    let Some(cr) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..cr];
    let after = cr + 2;
    match kind {
        b'+' | b'-' | b'_' | b',' | b'#' | b'(' => Ok(Some((
            after,
            Reply {
                kind,
                int: None,
                len: None,
            },
        ))),
        b':' => Ok(Some((
            after,
            Reply {
                kind,
                int: parse_int(line),
                len: None,
            },
        ))),
        b'$' | b'=' | b'!' => {
            let len = parse_int(line).ok_or("bad bulk length")?;
            if len < 0 {
                return Ok(Some((
                    after,
                    Reply {
                        kind,
                        int: None,
                        len: None,
                    },
                )));
            }
            let end = after + len as usize + 2;
            if end > buf.len() {
                return Ok(None);
            }
            Ok(Some((
                end,
                Reply {
                    kind,
                    int: None,
                    len: None,
                },
            )))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = parse_int(line).ok_or("bad aggregate length")?;
            // A map's (or attribute's) entries are a key and a value each.
            let n = if matches!(kind, b'%' | b'|') {
                count * 2
            } else {
                count
            };
            let mut p = after;
            let mut first = None;
            for i in 0..n.max(0) {
                match parse_reply(buf, p)? {
                    Some((end, r)) => {
                        if i == 0 {
                            first = r.int;
                        }
                        p = end;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((
                p,
                Reply {
                    kind,
                    int: first,
                    len: (count >= 0).then_some(count),
                },
            )))
        }
        other => Err(format!("unexpected RESP type byte {:?}", other as char)),
    }
}

// ---------------------------------------------------------------- histogram

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

/// Log-linear latency histogram in nanoseconds (64 sub-buckets per power of
/// two: values are kept within 1.6 %).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (64 * SUB) as usize],
            total: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        (((shift + 1) as u64) << SUB_BITS) as usize + ((v >> shift) & (SUB - 1)) as usize
    }

    /// Midpoint of the values that fall in bucket `i`.
    fn value(i: usize) -> f64 {
        let i = i as u64;
        if i < SUB {
            return i as f64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let low = (SUB + (i & (SUB - 1))) << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    pub fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
    }

    /// The `q` quantile (0 < q <= 1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i) / 1000.0;
            }
        }
        f64::NAN
    }
}

// ---------------------------------------------------------------- plans

/// One buffer written to one of the client's connections.
#[derive(Default)]
pub struct Send {
    pub conn: usize,
    pub buf: Vec<u8>,
    pub replies: usize,
}

/// Sends written together; done when all their replies are in.
#[derive(Default)]
pub struct Stage {
    sends: Vec<Send>,
    used: usize,
}

/// What one client sends before starting its next plan (see the module doc).
/// Buffers are reused from plan to plan.
#[derive(Default)]
pub struct Plan {
    stages: Vec<Stage>,
    used: usize,
    /// Number of requests this plan completes.
    pub requests: usize,
    /// `Some(k)`: single-connection pipeline, a request completes every `k`
    /// replies. `None`: the whole plan is one request.
    pub replies_per_request: Option<usize>,
}

impl Plan {
    pub fn clear(&mut self) {
        self.used = 0;
        self.requests = 1;
        self.replies_per_request = None;
    }

    /// Starts a new stage.
    pub fn stage(&mut self) {
        if self.used == self.stages.len() {
            self.stages.push(Stage::default());
        }
        self.stages[self.used].used = 0;
        self.used += 1;
    }

    /// The send buffer of the current stage for `conn` (created empty on first use).
    pub fn send(&mut self, conn: usize) -> &mut Send {
        let stage = &mut self.stages[self.used - 1];
        if let Some(i) = stage.sends[..stage.used]
            .iter()
            .position(|s| s.conn == conn)
        {
            return &mut stage.sends[i];
        }
        if stage.used == stage.sends.len() {
            stage.sends.push(Send::default());
        }
        let s = &mut stage.sends[stage.used];
        stage.used += 1;
        s.conn = conn;
        s.buf.clear();
        s.replies = 0;
        s
    }

    /// Appends a command to the current stage's buffer for `conn`.
    pub fn cmd(&mut self, conn: usize, args: &[&[u8]]) {
        let s = self.send(conn);
        push_cmd(&mut s.buf, args);
        s.replies += 1;
    }
}

/// Fills a client's next plan.
pub trait Workload {
    fn next_plan(&mut self, client: usize, rng: &mut Rng, plan: &mut Plan);
}

/// How to read a command's reply: admitted, denied, or not a reply that
/// command gives at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyCheck {
    /// Nothing is counted as denied; any reply but an error is accepted.
    None,
    /// `SHIELD.absorb` / Lua bucket: an integer, `-1` when denied, tokens left
    /// (`>= 0`) when admitted; `SHIELD.absorball`: an array, starting with `0`
    /// when denied.
    Shield,
    /// `CL.THROTTLE` and `GCRA`: an array of five integers, the first `0`
    /// when admitted and `1` when limited.
    Throttle,
}

/// What a reply (other than an error) says, read by a [`DenyCheck`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Admitted,
    Denied,
    /// Not a reply of the command (counted as an error: it invalidates the figure).
    Unexpected,
}

impl DenyCheck {
    pub fn outcome(self, r: &Reply) -> Outcome {
        match self {
            DenyCheck::None => Outcome::Admitted,
            DenyCheck::Shield => match (r.kind, r.int) {
                (b':', Some(-1)) | (b'*', Some(0)) => Outcome::Denied,
                (b':', Some(n)) if n >= 0 => Outcome::Admitted,
                (b'*', _) => Outcome::Admitted,
                _ => Outcome::Unexpected,
            },
            DenyCheck::Throttle => match (r.kind, r.len, r.int) {
                (b'*', Some(5), Some(0)) => Outcome::Admitted,
                (b'*', Some(5), Some(1)) => Outcome::Denied,
                _ => Outcome::Unexpected,
            },
        }
    }
}

// ---------------------------------------------------------------- engine

/// Outcome of one measured run.
#[derive(Clone, Default)]
pub struct RunResult {
    /// Requests completed inside the measurement window.
    pub requests: u64,
    pub secs: f64,
    pub hist: Histogram,
    /// Replies seen during the whole run (warm-up included).
    pub replies: u64,
    /// Error replies, and replies the [`DenyCheck`] does not recognize.
    pub errors: u64,
    pub denied: u64,
    pub first_error: Option<String>,
    /// CPU time of the server process(es) during the window, in cores (1.0 = one core busy).
    pub server_cpu: f64,
    /// CPU time of this load generator during the window, in cores.
    pub client_cpu: f64,
    /// Time the pinned cores ran tasks other than the server(s) and the load
    /// generator, or were stolen by the hypervisor, in cores.
    pub other_cpu: f64,
}

impl RunResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    rlen: usize,
    /// Replies still expected in the current stage.
    pending: usize,
}

struct Client {
    conns: Vec<Conn>,
    plan: Plan,
    stage: usize,
    stage_pending: usize,
    /// Replies received in the current plan (single-connection pipelines).
    got: usize,
    started: Instant,
}

pub struct RunSpec<'a> {
    /// For each client, the addresses of its connections (index = `Send::conn`).
    pub clients: Vec<Vec<SocketAddr>>,
    pub warmup: Duration,
    pub measure: Duration,
    pub deny: DenyCheck,
    pub workload: &'a mut dyn Workload,
    pub seed: u64,
    /// Server processes whose CPU use is sampled over the measurement window.
    pub server_pids: Vec<u32>,
    /// The cores server(s) and load generator are pinned to (for `other_cpu`).
    pub cores: Vec<usize>,
}

/// Busy seconds of the given cores (everything but idle and iowait, steal
/// included), from `/proc/stat`. Softirq work done in a task's context (all of
/// loopback TCP) is charged to that task too, so it stays in: `this - (task
/// times)` is what other tasks, interrupts and the hypervisor took.
pub fn cores_busy_seconds(cores: &[usize]) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    // SAFETY: plain sysconf query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for core in cores {
        let name = format!("cpu{core}");
        let Some(line) = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        else {
            return f64::NAN;
        };
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest is inside user)
        let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
        total += busy;
    }
    total / hz
}

/// utime + stime of a process (all threads), in seconds.
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // SAFETY: plain sysconf query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

struct CpuSample {
    at: Instant,
    server: f64,
    client: f64,
    cores: f64,
}

fn cpu_sample(pids: &[u32], cores: &[usize]) -> CpuSample {
    CpuSample {
        at: Instant::now(),
        server: pids.iter().map(|p| cpu_seconds(&p.to_string())).sum(),
        client: cpu_seconds("self"),
        cores: cores_busy_seconds(cores),
    }
}

fn epoll_add(ep: i32, fd: i32, data: u64) {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: data,
    };
    // SAFETY: valid epoll fd, valid socket fd, ev outlives the call.
    let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
}

/// Runs closed-loop clients for `warmup + measure` and measures the window
/// after the warm-up. Sockets are blocking: epoll (level-triggered) says when
/// a read will not block, and writes are small and only issued when the
/// connection has no replies outstanding, so they never block for long.
pub fn run(spec: RunSpec) -> Result<RunResult, String> {
    let RunSpec {
        clients: addrs,
        warmup,
        measure,
        deny,
        workload,
        seed,
        server_pids,
        cores,
    } = spec;
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(format!(
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        ));
    }
    struct Ep(i32);
    impl Drop for Ep {
        fn drop(&mut self) {
            // SAFETY: we own the fd.
            unsafe { libc::close(self.0) };
        }
    }
    let _ep_guard = Ep(ep);

    let mut clients = Vec::with_capacity(addrs.len());
    for (ci, list) in addrs.iter().enumerate() {
        let mut conns = Vec::new();
        for (j, addr) in list.iter().enumerate() {
            let stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            epoll_add(ep, stream.as_raw_fd(), ((ci as u64) << 16) | j as u64);
            conns.push(Conn {
                stream,
                rbuf: vec![0; 64 * 1024],
                rlen: 0,
                pending: 0,
            });
        }
        clients.push(Client {
            conns,
            plan: Plan::default(),
            stage: 0,
            stage_pending: 0,
            got: 0,
            started: Instant::now(),
        });
    }

    let mut rngs: Vec<Rng> = (0..clients.len())
        .map(|i| Rng::from_seed(seed ^ ((i as u64 + 1) << 32)))
        .collect();
    let mut res = RunResult::default();
    let t0 = Instant::now();
    let t_measure = t0 + warmup;
    let t_end = t_measure + measure;

    fn start_stage(c: &mut Client) -> Result<(), String> {
        let stage = &c.plan.stages[c.stage];
        c.stage_pending = 0;
        for s in &stage.sends[..stage.used] {
            let conn = &mut c.conns[s.conn];
            conn.pending += s.replies;
            c.stage_pending += s.replies;
            conn.stream
                .write_all(&s.buf)
                .map_err(|e| format!("write: {e}"))?;
        }
        Ok(())
    }

    fn start_plan(
        c: &mut Client,
        ci: usize,
        w: &mut dyn Workload,
        rng: &mut Rng,
    ) -> Result<(), String> {
        c.plan.clear();
        w.next_plan(ci, rng, &mut c.plan);
        c.stage = 0;
        c.got = 0;
        c.started = Instant::now();
        start_stage(c)
    }

    for (ci, c) in clients.iter_mut().enumerate() {
        start_plan(c, ci, workload, &mut rngs[ci])?;
    }

    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
    let mut now = Instant::now();
    let mut cpu_start: Option<CpuSample> = None;
    while now < t_end {
        if cpu_start.is_none() && now >= t_measure {
            cpu_start = Some(cpu_sample(&server_pids, &cores));
        }
        // SAFETY: events has the capacity we pass.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 5) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("epoll_wait: {e}"));
        }
        for ev in &events[..n as usize] {
            let data = ev.u64;
            let ci = (data >> 16) as usize;
            let j = (data & 0xffff) as usize;
            let c = &mut clients[ci];
            let conn = &mut c.conns[j];
            if conn.rlen == conn.rbuf.len() {
                let len = conn.rbuf.len();
                conn.rbuf.resize(len * 2, 0);
            }
            let got = conn
                .stream
                .read(&mut conn.rbuf[conn.rlen..])
                .map_err(|e| format!("read: {e}"))?;
            if got == 0 {
                return Err("server closed a connection".into());
            }
            conn.rlen += got;
            now = Instant::now();
            let in_window = now >= t_measure && now < t_end;
            let mut pos = 0;
            let mut stage_done = false;
            let mut plan_done = false;
            while let Some((end, r)) = parse_reply(&conn.rbuf[..conn.rlen], pos)? {
                let start = pos;
                pos = end;
                res.replies += 1;
                if r.kind == b'-' {
                    res.errors += 1;
                    if res.first_error.is_none() {
                        res.first_error =
                            Some(String::from_utf8_lossy(&conn.rbuf[start + 1..end - 2]).into());
                    }
                } else {
                    match deny.outcome(&r) {
                        Outcome::Admitted => {}
                        Outcome::Denied => res.denied += 1,
                        Outcome::Unexpected => {
                            res.errors += 1;
                            if res.first_error.is_none() {
                                res.first_error =
                                    Some(unexpected_reply_text(&conn.rbuf[start..end]));
                            }
                        }
                    }
                }
                if conn.pending == 0 {
                    return Err("reply without a request".into());
                }
                conn.pending -= 1;
                c.stage_pending -= 1;
                c.got += 1;
                if let Some(k) = c.plan.replies_per_request {
                    if c.got % k == 0 && in_window {
                        res.requests += 1;
                        res.hist.record((now - c.started).as_nanos() as u64);
                    }
                }
                if c.stage_pending == 0 {
                    stage_done = true;
                    if c.stage + 1 == c.plan.used {
                        plan_done = true;
                        if c.plan.replies_per_request.is_none() && in_window {
                            res.requests += 1;
                            res.hist.record((now - c.started).as_nanos() as u64);
                        }
                    }
                    break;
                }
            }
            if pos == conn.rlen {
                conn.rlen = 0;
            } else if pos > 0 {
                conn.rbuf.copy_within(pos..conn.rlen, 0);
                conn.rlen -= pos;
            }
            if stage_done && now < t_end {
                if plan_done {
                    start_plan(c, ci, workload, &mut rngs[ci])?;
                } else {
                    c.stage += 1;
                    start_stage(c)?;
                }
            }
        }
        now = Instant::now();
    }
    res.secs = measure.as_secs_f64();
    if let Some(a) = cpu_start {
        let b = cpu_sample(&server_pids, &cores);
        let wall = (b.at - a.at).as_secs_f64();
        res.server_cpu = (b.server - a.server) / wall;
        res.client_cpu = (b.client - a.client) / wall;
        res.other_cpu = if cores.is_empty() {
            f64::NAN
        } else {
            ((b.cores - a.cores) - (b.server - a.server) - (b.client - a.client)) / wall
        };
    }
    Ok(res)
}

/// How an unexpected reply is reported: its first 60 bytes, CRLF shown as `|`.
pub fn unexpected_reply_text(raw: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&raw[..raw.len().min(60)])
        .replace("\r\n", "|")
        .chars()
        .collect();
    format!(
        "unexpected reply {shown}{}",
        if raw.len() > 60 { "..." } else { "" }
    )
}

/// The text of the first `-ERR ...` line in a buffer of replies.
fn first_error_text(buf: &[u8]) -> String {
    let mut pos = 0;
    while let Ok(Some((end, r))) = parse_reply(buf, pos) {
        if r.kind == b'-' {
            return String::from_utf8_lossy(&buf[pos + 1..end - 2]).into_owned();
        }
        pos = end;
    }
    "?".into()
}

// ---------------------------------------------------------------- bulk loading

/// Sends `n` commands built by `build(i, out)` over one connection, `chunk`
/// at a time, and waits for all replies. Returns (errors, first error text).
pub fn bulk(
    addr: SocketAddr,
    n: u64,
    chunk: u64,
    mut build: impl FnMut(u64, &mut Vec<u8>) -> usize,
) -> Result<(u64, Option<String>), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).ok();
    let mut out = Vec::with_capacity(1 << 20);
    let mut rbuf = vec![0u8; 1 << 20];
    let mut errors = 0;
    let mut first = None;
    let mut i = 0;
    while i < n {
        out.clear();
        let mut expect = 0;
        let end = (i + chunk).min(n);
        while i < end {
            expect += build(i, &mut out);
            i += 1;
        }
        stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
        let mut rlen = 0;
        let mut pos = 0;
        while expect > 0 {
            if rlen == rbuf.len() {
                rbuf.resize(rbuf.len() * 2, 0);
            }
            let got = stream
                .read(&mut rbuf[rlen..])
                .map_err(|e| format!("read: {e}"))?;
            if got == 0 {
                return Err("server closed the connection".into());
            }
            rlen += got;
            while expect > 0 {
                match parse_reply(&rbuf[..rlen], pos)? {
                    Some((e, r)) => {
                        if r.kind == b'-' {
                            errors += 1;
                            if first.is_none() {
                                first = Some(String::from_utf8_lossy(&rbuf[pos + 1..e - 2]).into());
                            }
                        }
                        pos = e;
                        expect -= 1;
                    }
                    None => break,
                }
            }
            if pos == rlen {
                rlen = 0;
                pos = 0;
            }
        }
    }
    Ok((errors, first))
}

// ---------------------------------------------------------------- self-checks

fn reply(kind: u8, int: Option<i64>, len: Option<i64>) -> Reply {
    Reply { kind, int, len }
}

/// Reads every reply of `buf` with `check`: the outcome of each (`E` for an
/// error reply, then `A`dmitted, `D`enied, `U`nexpected).
fn outcomes(check: DenyCheck, buf: &[u8]) -> String {
    let mut pos = 0;
    let mut out = String::new();
    while let Ok(Some((end, r))) = parse_reply(buf, pos) {
        out.push(if r.kind == b'-' {
            'E'
        } else {
            match check.outcome(&r) {
                Outcome::Admitted => 'A',
                Outcome::Denied => 'D',
                Outcome::Unexpected => 'U',
            }
        });
        pos = end;
    }
    out
}

pub fn self_check() -> Vec<(&'static str, Result<(), String>)> {
    let mut out = Vec::new();
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };

    let mut b = Vec::new();
    push_cmd(&mut b, &[b"SET", b"k", b"12"]);
    out.push((
        "resp: push_cmd",
        check(
            b == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n",
            "bad encoding",
        ),
    ));

    let buf = b":-1\r\n+OK\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:0\r\n:5\r\n-ERR x\r\n*1\r\n$2\r\nab\r\n";
    let mut pos = 0;
    let mut got = Vec::new();
    while let Ok(Some((end, r))) = parse_reply(buf, pos) {
        got.push(r);
        pos = end;
    }
    let want = vec![
        reply(b':', Some(-1), None),
        reply(b'+', None, None),
        reply(b'$', None, None),
        reply(b'$', None, None),
        reply(b'*', Some(0), Some(2)),
        reply(b'-', None, None),
        reply(b'*', None, Some(1)),
    ];
    out.push((
        "resp: parse_reply on complete replies",
        check(got == want && pos == buf.len(), "mismatch"),
    ));
    let partial_ok = (1..buf.len()).all(|cut| {
        // A cut anywhere must never produce a reply that spans the cut.
        let mut pos = 0;
        while let Ok(Some((end, _))) = parse_reply(&buf[..cut], pos) {
            if end > cut {
                return false;
            }
            pos = end;
        }
        true
    });
    out.push((
        "resp: parse_reply on partial input",
        check(partial_ok, "bad"),
    ));
    out.push((
        "resp: first_error_text",
        check(first_error_text(buf) == "ERR x", "bad"),
    ));

    let mut h = Histogram::default();
    for v in 1..=100_000u64 {
        h.record(v * 1000);
    }
    let p50 = h.quantile_us(0.5);
    let p99 = h.quantile_us(0.99);
    out.push((
        "histogram: quantiles within 2 %",
        check(
            (p50 / 50_000.0 - 1.0).abs() < 0.02 && (p99 / 99_000.0 - 1.0).abs() < 0.02,
            &format!("p50 {p50} p99 {p99}"),
        ),
    ));

    // The replies of CL.THROTTLE / GCRA, SHIELD.absorb and SHIELD.absorball,
    // and what each check makes of them.
    let allowed = b"*5\r\n:0\r\n:16\r\n:15\r\n:-1\r\n:2\r\n";
    let limited = b"*5\r\n:1\r\n:1\r\n:0\r\n:1000000000\r\n:1000000000\r\n";
    let short = b"*4\r\n:0\r\n:16\r\n:15\r\n:-1\r\n";
    let flag2 = b"*5\r\n:2\r\n:16\r\n:15\r\n:-1\r\n:2\r\n";
    let absorball = b"*4\r\n:0\r\n:1\r\n*1\r\n:-1\r\n*1\r\n$1\r\nk\r\n";
    let shield = b":41\r\n:0\r\n:-1\r\n:-2\r\n+OK\r\n-ERR x\r\n";
    let mut all = Vec::new();
    for part in [
        &allowed[..],
        limited,
        short,
        flag2,
        absorball,
        shield,
        b"$-1\r\n",
    ] {
        all.extend_from_slice(part);
    }
    let got = [
        outcomes(DenyCheck::Throttle, &all),
        outcomes(DenyCheck::Shield, &all),
        outcomes(DenyCheck::None, &all),
    ];
    let want = ["ADUUUUUUUUEU", "DADADAADUUEU", "AAAAAAAAAAEA"];
    out.push((
        "replies: admitted / denied / unexpected by CL.THROTTLE-GCRA, SHIELD and no check",
        check(got == want, &format!("got {got:?}, want {want:?}")),
    ));
    out.push((
        "replies: an unexpected reply is shown with its text",
        check(
            unexpected_reply_text(b":5\r\n") == "unexpected reply :5|",
            &unexpected_reply_text(b":5\r\n"),
        ),
    ));

    let mut d = [0u8; 6];
    write_digits(&mut d, 4217);
    out.push(("write_digits", check(&d == b"004217", "bad")));
    out
}
