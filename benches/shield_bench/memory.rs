//! The memory section: `used_memory` growth per key of each kind of bucket.

use std::time::Duration;

use shield_testkit::{info_field, Server};

use crate::config::Config;
use crate::loadgen::{self, push_cmd};
use crate::report::fmt_int;
use crate::results::{MemFigure, Results};
use crate::workloads::{addr_of, flushall, write_digits, Family, Spec, KEY, SHA};

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

pub fn run_memory(
    cfg: &Config,
    server: &Server,
    ctl: &mut redis::Connection,
    sha: &str,
    specs: &[&'static Spec],
    res: &mut Results,
) -> Result<(), String> {
    let n = cfg.memory_buckets;
    println!(
        "\n== memory: used_memory growth over {} keys, {} run(s)",
        fmt_int(n as f64),
        cfg.reps
    );
    let addr = addr_of(server);
    let have_cell = specs.iter().any(|s| s.family == Family::Cell);
    // (label, commands of one bucket, replies per bucket); $VAL = a 16-digit integer.
    let mut kinds: Vec<(&str, Vec<Vec<&str>>)> = vec![
        (
            "SHIELD.absorb k 1 3600 (idle bucket)",
            vec![vec!["SHIELD.absorb", KEY, "1", "3600"]],
        ),
        (
            "SET k <16-digit int> PX 3600000",
            vec![vec!["SET", KEY, "$VAL", "PX", "3600000"]],
        ),
        (
            "Lua token bucket (EVALSHA)",
            vec![vec!["EVALSHA", SHA, "1", KEY, "1", "3600"]],
        ),
        (
            "fixed window INCRBY k 1 + PEXPIRE k 3600000",
            vec![vec!["INCRBY", KEY, "1"], vec!["PEXPIRE", KEY, "3600000"]],
        ),
    ];
    if have_cell {
        kinds.push((
            "CL.THROTTLE (redis-cell)",
            vec![vec!["CL.THROTTLE", KEY, "0", "1", "3600"]],
        ));
    }
    for (label, _) in &kinds {
        res.memory.push(MemFigure {
            label: label.to_string(),
            per_key: vec![],
            usage: None,
            invalid: vec![],
        });
    }
    for rep in 0..cfg.reps {
        for (ki, (label, cmds)) in kinds.iter().enumerate() {
            flushall(addr)?;
            let before = settled_memory(ctl)?;
            let (errors, first) = loadgen::bulk(addr, n, 1000, |i, out| {
                let mut key = *b"k:0000000";
                write_digits(&mut key[2..], i);
                let mut val = *b"1000000000000000";
                write_digits(&mut val[1..], i);
                for cmd in cmds {
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
                cmds.len()
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
                "  [{}/{}] {:<45} {:>7.1} bytes/key (used_memory {} -> {}), MEMORY USAGE {}",
                rep + 1,
                cfg.reps,
                label,
                per_key,
                before,
                after,
                usage.map_or("-".into(), |u| u.to_string())
            );
        }
    }
    flushall(addr)?;
    Ok(())
}
