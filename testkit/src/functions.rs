//! The SHIELD operations through either engine: the module's commands
//! (`SHIELD.absorb`, ...) or the Functions library `functions/shield.lua`
//! (`FCALL shield_absorb`, ...), so that one test case runs against both.
//!
//! ```no_run
//! use shield_testkit::functions::Engine;
//!
//! for engine in Engine::BOTH {
//!     // Module: a server with it; Library: a server without it, library loaded.
//!     let server = engine.start_server();
//!     let mut c = server.conn();
//!     assert_eq!(engine.absorb(&mut c, "user123", 30, 60, Some(13)), 17);
//! }
//! ```
//!
//! A test file writes a case once, as `fn case(engine: Engine)`, and
//! [`engine_tests!`](crate::engine_tests) makes one `#[test]` per engine
//! of it: `case::module` and `case::library`.

use std::fmt;

use redis::{ConnectionLike, RedisResult, Value};

use crate::pair::Pair;
use crate::server::{repo_root, Server, ServerOptions};
use crate::shield::AbsorbAllReply;

/// The library's source, as `FUNCTION LOAD` takes it.
pub fn library_source() -> String {
    let path = repo_root().join("functions/shield.lua");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `FUNCTION LOAD REPLACE <library>` on one connection (a master; replicas
/// receive it by replication).
pub fn load_library<C: ConnectionLike>(c: &mut C) {
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(library_source())
        .query(c)
        .unwrap_or_else(|e| panic!("FUNCTION LOAD REPLACE functions/shield.lua: {e}"));
    assert_eq!(name, "shield");
}

/// Which implementation answers a SHIELD operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The module's commands.
    Module,
    /// The Functions library, through `FCALL` / `FCALL_RO`.
    Library,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Module => "module",
            Engine::Library => "library",
        })
    }
}

impl Engine {
    pub const BOTH: [Engine; 2] = [Engine::Module, Engine::Library];

    /// A server that speaks this engine only: with the module, or without
    /// it and with the library loaded.
    pub fn start_server(self) -> Server {
        self.start(ServerOptions::default())
    }

    /// `opts` for a server of this engine: as they are for the module;
    /// without the module for the library.
    pub fn server_options(self, opts: ServerOptions) -> ServerOptions {
        match self {
            Engine::Module => opts,
            Engine::Library => opts.without_module(),
        }
    }

    /// A server of this engine with `opts` (AOF, arguments...): the module
    /// loaded, or no module and the library loaded (`FUNCTION LOAD`, which
    /// the server persists and replicates like data).
    pub fn start(self, opts: ServerOptions) -> Server {
        let s = Server::start(self.server_options(opts));
        if self == Engine::Library {
            load_library(&mut s.conn());
        }
        s
    }

    /// A master of this engine (see [`Engine::start`]) and a synced replica
    /// started with `replica` as given (with or without the module: a
    /// replica needs neither to hold a bucket; it has the library by
    /// replication).
    pub fn start_pair_with(self, master: ServerOptions, replica: ServerOptions) -> Pair {
        let master = self.start(master);
        let replica = Server::start_replica(&master, replica);
        Pair { master, replica }
    }

    /// A master and a replica that both speak this engine only: both with
    /// the module, or both without it (the library loaded on the master,
    /// replicated to the replica).
    pub fn start_pair(self) -> Pair {
        self.start_pair_with(
            ServerOptions::default(),
            self.server_options(ServerOptions::default()),
        )
    }

    /// `SHIELD.absorb key args...` / `FCALL shield_absorb 1 key args...`,
    /// with raw arguments after the key.
    pub fn absorb_cmd(self, key: &[u8], args: &[&[u8]]) -> redis::Cmd {
        self.single("SHIELD.absorb", "shield_absorb", "FCALL", key, args)
    }

    /// `SHIELD.inspect key args...` / `FCALL_RO shield_inspect 1 key args...`.
    pub fn inspect_cmd(self, key: &[u8], args: &[&[u8]]) -> redis::Cmd {
        self.single("SHIELD.inspect", "shield_inspect", "FCALL_RO", key, args)
    }

    fn single(
        self,
        command: &str,
        function: &str,
        fcall: &str,
        key: &[u8],
        args: &[&[u8]],
    ) -> redis::Cmd {
        let mut cmd = match self {
            Engine::Module => redis::cmd(command),
            Engine::Library => {
                let mut c = redis::cmd(fcall);
                c.arg(function).arg(1);
                c
            }
        };
        cmd.arg(key);
        for a in args {
            cmd.arg(*a);
        }
        cmd
    }

    /// `SHIELD.absorb args...` / `FCALL shield_absorb 1 args...`: the
    /// module's argument list (key first) as this engine takes it; no
    /// arguments at all is `FCALL shield_absorb 0` (for arity cases).
    pub fn absorb_args_cmd(self, args: &[&[u8]]) -> redis::Cmd {
        self.single_args("SHIELD.absorb", "shield_absorb", "FCALL", args)
    }

    /// `SHIELD.inspect args...` / `FCALL_RO shield_inspect 1 args...`, like
    /// [`Engine::absorb_args_cmd`].
    pub fn inspect_args_cmd(self, args: &[&[u8]]) -> redis::Cmd {
        self.single_args("SHIELD.inspect", "shield_inspect", "FCALL_RO", args)
    }

    fn single_args(self, command: &str, function: &str, fcall: &str, args: &[&[u8]]) -> redis::Cmd {
        match args.split_first() {
            Some((key, rest)) => self.single(command, function, fcall, key, rest),
            None => match self {
                Engine::Module => redis::cmd(command),
                Engine::Library => {
                    let mut c = redis::cmd(fcall);
                    c.arg(function).arg(0);
                    c
                }
            },
        }
    }

    /// `SHIELD.absorball args...` with the module's flat argument list
    /// (`k1 c1 p1 t1 k2 ...`, possibly malformed), as this engine takes it:
    /// for the library every fourth argument from the first is a key and
    /// the others follow the keys in order, so a list of the wrong length
    /// stays one (`k 1 1 1 j` is `FCALL shield_absorball 2 k j 1 1 1`).
    pub fn absorb_all_args_cmd(self, args: &[&[u8]]) -> redis::Cmd {
        match self {
            Engine::Module => {
                let mut cmd = redis::cmd("SHIELD.absorball");
                for a in args {
                    cmd.arg(*a);
                }
                cmd
            }
            Engine::Library => {
                let keys: Vec<&[u8]> = args.iter().step_by(4).copied().collect();
                let mut cmd = redis::cmd("FCALL");
                cmd.arg("shield_absorball").arg(keys.len());
                for k in &keys {
                    cmd.arg(*k);
                }
                for (i, a) in args.iter().enumerate() {
                    if i % 4 != 0 {
                        cmd.arg(*a);
                    }
                }
                cmd
            }
        }
    }

    /// `SHIELD.absorball k1 c1 p1 t1 ...` / `FCALL shield_absorball N k1..kN
    /// c1 p1 t1 ...`, from `(key, [capacity, period, tokens])` groups.
    pub fn absorb_all_cmd(self, groups: &[(&[u8], [&[u8]; 3])]) -> redis::Cmd {
        match self {
            Engine::Module => {
                let mut cmd = redis::cmd("SHIELD.absorball");
                for (key, args) in groups {
                    cmd.arg(*key).arg(&args[..]);
                }
                cmd
            }
            Engine::Library => {
                let mut cmd = redis::cmd("FCALL");
                cmd.arg("shield_absorball").arg(groups.len());
                for (key, _) in groups {
                    cmd.arg(*key);
                }
                for (_, args) in groups {
                    cmd.arg(&args[..]);
                }
                cmd
            }
        }
    }

    /// The absorb of `absorb_cmd` with typed arguments; `details` adds
    /// `WITHDETAILS`.
    pub fn absorb_typed_cmd(
        self,
        key: &str,
        capacity: u64,
        period: u64,
        tokens: Option<u64>,
        details: bool,
    ) -> redis::Cmd {
        let (c, p) = (capacity.to_string(), period.to_string());
        let t = tokens.map(|t| t.to_string());
        let mut args: Vec<&[u8]> = vec![c.as_bytes(), p.as_bytes()];
        if let Some(t) = &t {
            args.push(t.as_bytes());
        }
        if details {
            args.push(b"WITHDETAILS");
        }
        self.absorb_cmd(key.as_bytes(), &args)
    }

    /// Absorb: the server's answer (an integer reply or the error).
    pub fn try_absorb<C: ConnectionLike>(
        self,
        c: &mut C,
        key: &str,
        capacity: u64,
        period: u64,
        tokens: Option<u64>,
    ) -> RedisResult<i64> {
        self.absorb_typed_cmd(key, capacity, period, tokens, false)
            .query(c)
    }

    /// Absorb, expecting an integer reply.
    pub fn absorb<C: ConnectionLike>(
        self,
        c: &mut C,
        key: &str,
        capacity: u64,
        period: u64,
        tokens: Option<u64>,
    ) -> i64 {
        self.absorb_typed_cmd(key, capacity, period, tokens, false)
            .query(c)
            .unwrap_or_else(|e| panic!("{self} absorb {key:?} {capacity} {period} {tokens:?}: {e}"))
    }

    /// Absorb with `WITHDETAILS`: `[admitted, left, retry_after_ms, reset_after_ms]`.
    pub fn absorb_details<C: ConnectionLike>(
        self,
        c: &mut C,
        key: &str,
        capacity: u64,
        period: u64,
        tokens: u64,
    ) -> [i64; 4] {
        let v: Vec<i64> = self
            .absorb_typed_cmd(key, capacity, period, Some(tokens), true)
            .query(c)
            .unwrap_or_else(|e| {
                panic!("{self} absorb {key:?} {capacity} {period} {tokens} WITHDETAILS: {e}")
            });
        v.try_into()
            .unwrap_or_else(|v| panic!("{self} WITHDETAILS answered {v:?}"))
    }

    /// Inspect: the server's answer, `[available, capacity, next_ms,
    /// full_ms]` when it is not an error.
    pub fn try_inspect<C: ConnectionLike>(
        self,
        c: &mut C,
        key: &str,
        capacity: u64,
        period: u64,
    ) -> RedisResult<[i64; 4]> {
        let (cap, per) = (capacity.to_string(), period.to_string());
        let v: Vec<i64> = self
            .inspect_cmd(key.as_bytes(), &[cap.as_bytes(), per.as_bytes()])
            .query(c)?;
        Ok(v.try_into()
            .unwrap_or_else(|v| panic!("{self} inspect answered {v:?}")))
    }

    /// Inspect: `[available, capacity, next_ms, full_ms]`.
    pub fn inspect<C: ConnectionLike>(
        self,
        c: &mut C,
        key: &str,
        capacity: u64,
        period: u64,
    ) -> [i64; 4] {
        self.try_inspect(c, key, capacity, period)
            .unwrap_or_else(|e| panic!("{self} inspect {key:?} {capacity} {period}: {e}"))
    }

    /// Absorball with `(key, capacity, period, tokens)` groups: the reply or
    /// the error.
    pub fn try_absorb_all<C: ConnectionLike>(
        self,
        c: &mut C,
        buckets: &[(&str, u64, u64, u64)],
    ) -> RedisResult<AbsorbAllReply> {
        let text: Vec<[String; 3]> = buckets
            .iter()
            .map(|(_, c, p, t)| [c.to_string(), p.to_string(), t.to_string()])
            .collect();
        let groups: Vec<(&[u8], [&[u8]; 3])> = buckets
            .iter()
            .zip(&text)
            .map(|((k, ..), [c, p, t])| (k.as_bytes(), [c.as_bytes(), p.as_bytes(), t.as_bytes()]))
            .collect();
        self.absorb_all_cmd(&groups).query(c)
    }

    /// Absorball, expecting a reply (admitted or denied).
    pub fn absorb_all<C: ConnectionLike>(
        self,
        c: &mut C,
        buckets: &[(&str, u64, u64, u64)],
    ) -> AbsorbAllReply {
        self.try_absorb_all(c, buckets)
            .unwrap_or_else(|e| panic!("{self} absorball {buckets:?}: {e}"))
    }
}

/// `COMMAND GETKEYS <cmd's arguments>`: the keys the server finds in `cmd`
/// (the key specs of a module command, the declared keys of an `FCALL`).
pub fn getkeys<C: ConnectionLike>(c: &mut C, cmd: &redis::Cmd) -> Vec<String> {
    let mut getkeys = redis::cmd("COMMAND");
    getkeys.arg("GETKEYS");
    for a in cmd.args_iter() {
        if let redis::Arg::Simple(b) = a {
            getkeys.arg(b);
        }
    }
    getkeys
        .query(c)
        .unwrap_or_else(|e| panic!("COMMAND GETKEYS {}: {e}", cmd_text(cmd)))
}

/// Runs `cmd` expecting an error; returns it as the server wrote it
/// (`CODE detail`).
pub fn error_of<C: ConnectionLike>(c: &mut C, cmd: &redis::Cmd) -> String {
    match cmd.query::<Value>(c) {
        Ok(v) => panic!("{:?} should have failed, but answered {v:?}", cmd_text(cmd)),
        Err(err) => format!(
            "{} {}",
            err.code().unwrap_or("?"),
            err.detail().unwrap_or("")
        ),
    }
}

/// A command's arguments, lossily as text (for messages).
pub fn cmd_text(cmd: &redis::Cmd) -> String {
    cmd.args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
            _ => "<?>".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `#[test]` per engine for each case: for every `fn case(engine:
/// Engine)` named, a module `case` with the tests `module` and `library`
/// (so a failure reads `case::library`, and `cargo test ::library` runs every
/// case on the library).
///
/// ```no_run
/// use shield_testkit::functions::Engine;
///
/// fn documented_example(engine: Engine) {
///     let s = engine.start_server();
///     assert_eq!(engine.absorb(&mut s.conn(), "k", 30, 60, Some(13)), 17, "{engine}");
/// }
///
/// shield_testkit::engine_tests!(documented_example);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! engine_tests {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[test]
                fn module() {
                    super::$case($crate::functions::Engine::Module)
                }
                #[test]
                fn library() {
                    super::$case($crate::functions::Engine::Library)
                }
            }
        )+
    };
}
