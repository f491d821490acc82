//! The SHIELD.* commands (and the reads the tests make around them) on any
//! connection of the redis crate: a server's `redis::Connection`, a cluster
//! node's, or a `ClusterConnection` (which routes by key).
//!
//! ```no_run
//! use shield_testkit::{Server, ServerOptions, ShieldCommands};
//!
//! let server = Server::start(ServerOptions::default());
//! let mut c = server.conn();
//! assert_eq!(c.absorb("user123", 30, 60, Some(13)), 17);
//! assert_eq!(c.inspect("user123", 30, 60)[0], 17);
//! ```
//!
//! The methods without `try_` expect success and panic with the command and
//! the server's answer; the `try_` ones return it.

use std::fmt::Debug;

use redis::{ConnectionLike, RedisResult, ToRedisArgs};

/// `SHIELD.absorball`'s reply: `(admitted, retry_after_ms, tokens left per
/// bucket, keys short of tokens)`.
pub type AbsorbAllReply = (i64, i64, Vec<i64>, Vec<String>);

/// `SHIELD.absorb key capacity period [tokens]` as a command, for pipelines
/// (`pipe.add_command(absorb_cmd(...))`).
pub fn absorb_cmd<K: ToRedisArgs>(
    key: K,
    capacity: u64,
    period: u64,
    tokens: Option<u64>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("SHIELD.absorb");
    cmd.arg(key).arg(capacity).arg(period);
    if let Some(t) = tokens {
        cmd.arg(t);
    }
    cmd
}

/// SHIELD.* commands on any connection. Implemented for everything that is
/// `redis::ConnectionLike`.
pub trait ShieldCommands: ConnectionLike + Sized {
    /// `SHIELD.absorb key capacity period [tokens]`: the server's answer.
    fn try_absorb<K: ToRedisArgs + Debug>(
        &mut self,
        key: K,
        capacity: u64,
        period: u64,
        tokens: Option<u64>,
    ) -> RedisResult<i64> {
        absorb_cmd(key, capacity, period, tokens).query(self)
    }

    /// `SHIELD.absorb key capacity period [tokens]`, expecting an integer reply.
    fn absorb<K: ToRedisArgs + Debug>(
        &mut self,
        key: K,
        capacity: u64,
        period: u64,
        tokens: Option<u64>,
    ) -> i64 {
        let what = format!("SHIELD.absorb {key:?} {capacity} {period} {tokens:?}");
        self.try_absorb(key, capacity, period, tokens)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// `SHIELD.absorb key capacity period tokens WITHDETAILS`: `[admitted,
    /// left, retry_after_ms, reset_after_ms]`.
    fn absorb_details(&mut self, key: &str, capacity: u64, period: u64, tokens: u64) -> [i64; 4] {
        let v: Vec<i64> = redis::cmd("SHIELD.absorb")
            .arg(key)
            .arg(capacity)
            .arg(period)
            .arg(tokens)
            .arg("withdetails")
            .query(self)
            .unwrap_or_else(|e| {
                panic!("SHIELD.absorb {key:?} {capacity} {period} {tokens} WITHDETAILS: {e}")
            });
        four(v, "SHIELD.absorb WITHDETAILS")
    }

    /// `SHIELD.inspect key capacity period`: the server's answer,
    /// `[available, capacity, next_ms, full_ms]` when it is not an error.
    fn try_inspect(&mut self, key: &str, capacity: u64, period: u64) -> RedisResult<[i64; 4]> {
        let v: Vec<i64> = redis::cmd("SHIELD.inspect")
            .arg(key)
            .arg(capacity)
            .arg(period)
            .query(self)?;
        Ok(four(v, "SHIELD.inspect"))
    }

    /// `SHIELD.inspect key capacity period`: `[available, capacity, next_ms, full_ms]`.
    fn inspect(&mut self, key: &str, capacity: u64, period: u64) -> [i64; 4] {
        self.try_inspect(key, capacity, period)
            .unwrap_or_else(|e| panic!("SHIELD.inspect {key:?} {capacity} {period}: {e}"))
    }

    /// `SHIELD.absorball` with `(key, capacity, period, tokens)` groups: the server's answer.
    fn try_absorb_all(&mut self, buckets: &[(&str, u64, u64, u64)]) -> RedisResult<AbsorbAllReply> {
        let mut cmd = redis::cmd("SHIELD.absorball");
        for (key, capacity, period, tokens) in buckets {
            cmd.arg(*key).arg(*capacity).arg(*period).arg(*tokens);
        }
        cmd.query(self)
    }

    /// `SHIELD.absorball` with `(key, capacity, period, tokens)` groups,
    /// expecting a reply (admitted or denied), not an error.
    fn absorb_all(&mut self, buckets: &[(&str, u64, u64, u64)]) -> AbsorbAllReply {
        self.try_absorb_all(buckets)
            .unwrap_or_else(|e| panic!("SHIELD.absorball {buckets:?}: {e}"))
    }

    /// `command args...`, expecting an error; returns it as the server wrote
    /// it (`CODE detail`).
    fn command_err<A: ToRedisArgs + Debug>(&mut self, command: &str, args: A) -> String {
        let what = format!("{command} {args:?}");
        match redis::cmd(command).arg(args).query::<redis::Value>(self) {
            Ok(v) => panic!("{what} should have failed, but answered {v:?}"),
            Err(err) => format!(
                "{} {}",
                err.code().unwrap_or("?"),
                err.detail().unwrap_or("")
            ),
        }
    }

    /// `SHIELD.absorb` with raw arguments, expecting an error; returns it as
    /// the server wrote it (`CODE detail`).
    fn absorb_err(&mut self, args: &[&[u8]]) -> String {
        self.command_err("SHIELD.absorb", args)
    }

    /// A key's stored state: its value (`None`: no key) and `PEXPIRETIME`.
    /// (On a cluster replica the connection must have sent `READONLY`.)
    fn stored(&mut self, key: &str) -> (Option<Vec<u8>>, i64) {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query(self)
            .unwrap_or_else(|e| panic!("GET {key:?}: {e}"));
        let expire: i64 = redis::cmd("PEXPIRETIME")
            .arg(key)
            .query(self)
            .unwrap_or_else(|e| panic!("PEXPIRETIME {key:?}: {e}"));
        (value, expire)
    }

    /// `INFO <section>`.
    fn info_section(&mut self, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query(self)
            .unwrap_or_else(|e| panic!("INFO {section}: {e}"))
    }

    /// `CONFIG SET name value`.
    fn config_set(&mut self, name: &str, value: &str) {
        let set = redis::cmd("CONFIG").arg(&["SET", name, value]).query(self);
        set.unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"))
    }

    /// `COMMAND INFO name`: the command's name, arity, flags, key positions...
    fn command_info(&mut self, name: &str) -> redis::Value {
        let info = redis::cmd("COMMAND").arg(&["INFO", name]).query(self);
        info.unwrap_or_else(|e| panic!("COMMAND INFO {name}: {e}"))
    }

    /// `WAIT numreplicas 5000`: how many replicas acknowledged the writes so far.
    fn wait_replicas(&mut self, numreplicas: usize) -> usize {
        redis::cmd("WAIT")
            .arg(numreplicas)
            .arg(5_000)
            .query(self)
            .unwrap_or_else(|e| panic!("WAIT {numreplicas} 5000: {e}"))
    }
}

impl<C: ConnectionLike> ShieldCommands for C {}

fn four(v: Vec<i64>, what: &str) -> [i64; 4] {
    v.try_into()
        .unwrap_or_else(|v| panic!("{what} answered {v:?}, not four integers"))
}

/// The malformed numbers every numeric argument must reject (empty, zero,
/// signs, decimals, exponents, spaces, leading zeros, letters, binary, hex,
/// inf, nan).
pub const MALFORMED_NUMBERS: &[&[u8]] = &[
    b"",
    b"0",
    b"-1",
    b"+1",
    b"1.5",
    b"1e3",
    b" 1",
    b"01",
    b"abc",
    b"\x00",
    b"\xff\xfe\r\n",
    b"0x10",
    b"inf",
    b"nan",
    b"-0",
    // Taken by Lua's tonumber, which the library's fast path starts from.
    b"1 ",
    b"1\x00",
    b"1e2",
    b"100.0",
    b"0x1F",
];

/// Writes a key of each other type (`list`, `hash`, `set`, `zset`, named
/// after it) and returns their names.
pub fn keys_of_other_types(c: &mut redis::Connection) -> [&'static str; 4] {
    for cmd in [
        &["RPUSH", "list", "a"][..],
        &["HSET", "hash", "f", "v"],
        &["SADD", "set", "m"],
        &["ZADD", "zset", "1", "m"],
    ] {
        let _: () = redis::cmd(cmd[0])
            .arg(&cmd[1..])
            .query(c)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    }
    ["list", "hash", "set", "zset"]
}
