//! The memory section: `used_memory` growth per key of each kind of bucket.

use std::time::Duration;

use shield_testkit::info_field;

use crate::config::Config;
use crate::loadgen::{self, push_cmd};
use crate::report::fmt_int;
use crate::results::{MemFigure, Results};
use crate::single::Servers;
use crate::workloads::{addr_of, flushall, write_digits, Srv, KEY, SHA};

pub fn used_memory(c: &mut redis::Connection) -> Result<i64, String> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(c)
        .map_err(|e| e.to_string())?;
    info_field(&info, "used_memory")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no used_memory in INFO".to_string())
}

/// `used_memory` once it has stopped moving (a dict rehash in progress holds two tables).
pub fn settled_memory(c: &mut redis::Connection) -> Result<i64, String> {
    let mut last = used_memory(c)?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = used_memory(c)?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// One kind of key whose memory is measured: one bucket (or window) is the
/// commands of `cmds` on one key; `$VAL` is a 16-digit integer.
pub struct MemKind {
    pub id: &'static str,
    pub label: &'static str,
    pub server: Srv,
    pub cmds: &'static [&'static [&'static str]],
    /// Measured only with the `compat` section.
    pub compat: bool,
}

#[rustfmt::skip]
pub const MEM_KINDS: &[MemKind] = &[
    MemKind { id: "shield", label: "SHIELD.absorb k 1 3600 (idle bucket)", server: Srv::Main, cmds: &[&["SHIELD.absorb", KEY, "1", "3600"]], compat: false },
    MemKind { id: "set", label: "SET k <16-digit int> PX 3600000", server: Srv::Main, cmds: &[&["SET", KEY, "$VAL", "PX", "3600000"]], compat: false },
    MemKind { id: "set_tilde", label: "SET k ~0 PX 3600000 (a bucket's bytes, by SET)", server: Srv::Main, cmds: &[&["SET", KEY, "~0", "PX", "3600000"]], compat: false },
    MemKind { id: "lib", label: "shield library FCALL shield_absorb 1 k 1 3600", server: Srv::Main, cmds: &[&["FCALL", "shield_absorb", "1", KEY, "1", "3600"]], compat: false },
    MemKind { id: "lua", label: "Lua token bucket (EVALSHA)", server: Srv::Main, cmds: &[&["EVALSHA", SHA, "1", KEY, "1", "3600"]], compat: false },
    MemKind { id: "window", label: "fixed window INCRBY k 1 + PEXPIRE k 3600000", server: Srv::Main, cmds: &[&["INCRBY", KEY, "1"], &["PEXPIRE", KEY, "3600000"]], compat: false },
    MemKind { id: "cl", label: "CL.THROTTLE k 0 1 3600 (ours)", server: Srv::Main, cmds: &[&["CL.THROTTLE", KEY, "0", "1", "3600"]], compat: true },
    MemKind { id: "gcra", label: "GCRA k 0 1 3600 (ours)", server: Srv::Main, cmds: &[&["GCRA", KEY, "0", "1", "3600"]], compat: true },
    MemKind { id: "cell", label: "CL.THROTTLE k 0 1 3600 (redis-cell)", server: Srv::Cell, cmds: &[&["CL.THROTTLE", KEY, "0", "1", "3600"]], compat: true },
    MemKind { id: "ng_gcra", label: "GCRA k 0 1 3600 (native)", server: Srv::NativeGcra, cmds: &[&["GCRA", KEY, "0", "1", "3600"]], compat: true },
    MemKind { id: "ng_shield", label: "SHIELD.absorb k 1 3600 (idle bucket)", server: Srv::NativeGcra, cmds: &[&["SHIELD.absorb", KEY, "1", "3600"]], compat: true },
    MemKind { id: "ng_set", label: "SET k <16-digit int> PX 3600000", server: Srv::NativeGcra, cmds: &[&["SET", KEY, "$VAL", "PX", "3600000"]], compat: true },
    MemKind { id: "ng_set_tilde", label: "SET k ~0 PX 3600000 (a bucket's bytes, by SET)", server: Srv::NativeGcra, cmds: &[&["SET", KEY, "~0", "PX", "3600000"]], compat: true },
];

pub fn run_memory(
    cfg: &Config,
    servers: &Servers,
    sha: &str,
    res: &mut Results,
) -> Result<(), String> {
    let n = cfg.memory_buckets;
    let kinds: Vec<&MemKind> = MEM_KINDS
        .iter()
        .filter(|k| (!k.compat || cfg.section("compat")) && servers.get(k.server).is_some())
        .collect();
    println!(
        "\n== memory: used_memory growth over {} keys, {} run(s)",
        fmt_int(n as f64),
        cfg.reps
    );
    for k in &kinds {
        res.memory.push(MemFigure {
            id: k.id,
            label: k.label.to_string(),
            server: k.server,
            per_key: vec![],
            usage: None,
            invalid: vec![],
        });
    }
    let mut conns = Vec::new();
    for srv in Srv::ALL {
        conns.push(servers.get(srv).map(|s| s.conn()));
    }
    for rep in 0..cfg.reps {
        for (ki, kind) in kinds.iter().enumerate() {
            let server = servers.get(kind.server).expect("filtered above");
            let ctl = conns[Srv::ALL.iter().position(|s| *s == kind.server).unwrap()]
                .as_mut()
                .expect("a connection to each running server");
            let addr = addr_of(server);
            flushall(addr)?;
            let before = settled_memory(ctl)?;
            let (errors, first) = loadgen::bulk(addr, n, 1000, |i, out| {
                let mut key = *b"k:0000000";
                write_digits(&mut key[2..], i);
                let mut val = *b"1000000000000000";
                write_digits(&mut val[1..], i);
                for cmd in kind.cmds {
                    let args: Vec<&[u8]> = cmd
                        .iter()
                        .map(|a| match *a {
                            KEY => &key[..],
                            SHA => sha.as_bytes(),
                            "$VAL" => &val[..],
                            other => other.as_bytes(),
                        })
                        .collect();
                    push_cmd(out, &args);
                }
                kind.cmds.len()
            })?;
            let after = settled_memory(ctl)?;
            let dbsize: u64 = redis::cmd("DBSIZE").query(ctl).map_err(|e| e.to_string())?;
            let usage: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg("k:0000001")
                .query(ctl)
                .ok();
            let per_key = (after - before) as f64 / n as f64;
            let fig = &mut res.memory[ki];
            if errors > 0 {
                fig.invalid
                    .push(format!("{errors} errors: {}", first.unwrap_or_default()));
            } else if dbsize != n {
                fig.invalid.push(format!("DBSIZE {dbsize} != {n}"));
            }
            fig.usage = usage;
            fig.per_key.push(per_key);
            println!(
                "  [{}/{}] {:<12} {:<45} {:>7.1} bytes/key (used_memory {} -> {}), MEMORY USAGE {}",
                rep + 1,
                cfg.reps,
                kind.server.name(),
                kind.label,
                per_key,
                before,
                after,
                usage.map_or("-".into(), |u| u.to_string())
            );
        }
    }
    for srv in Srv::ALL {
        if let Some(s) = servers.get(srv) {
            flushall(addr_of(s))?;
        }
    }
    Ok(())
}
