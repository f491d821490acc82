//! A throw-away 6-node Redis Cluster (3 masters + 3 replicas) for the
//! benchmark, built from the test harness's `Server` (free loopback ports,
//! temp dirs, stopped by PID on drop), and the key → slot → master routing
//! the load generator needs.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{info_field, Server, ServerOptions};

pub use crate::common::key_slot::{key_slot, KNOWN_SLOTS};

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

pub struct Cluster {
    pub nodes: Vec<Server>,
    /// Master addresses, index = master number.
    pub masters: Vec<SocketAddr>,
    /// slot -> master number.
    pub slot_master: Vec<u8>,
}

impl Cluster {
    pub fn master_of(&self, key: &[u8]) -> usize {
        self.slot_master[key_slot(key) as usize] as usize
    }
}

fn cluster_info_ok(s: &Server) -> bool {
    let Ok(mut c) = s
        .client()
        .get_connection_with_timeout(Duration::from_secs(1))
    else {
        return false;
    };
    let Ok(info) = redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c) else {
        return false;
    };
    info_field(&info, "cluster_state").as_deref() == Some("ok")
        && info_field(&info, "cluster_slots_ok").as_deref() == Some("16384")
        && info_field(&info, "cluster_known_nodes").as_deref() == Some("6")
}

fn as_int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// `(first slot, last slot, master port, replica ports)`.
type SlotRange = (u16, u16, u16, Vec<u16>);

/// `CLUSTER SLOTS` of a node.
fn cluster_slots(s: &Server) -> Result<Vec<SlotRange>, String> {
    let mut c = s.conn();
    let v: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut c)
        .map_err(|e| e.to_string())?;
    let redis::Value::Array(ranges) = v else {
        return Err(format!("CLUSTER SLOTS: unexpected {v:?}"));
    };
    let mut out = Vec::new();
    for r in ranges {
        let redis::Value::Array(items) = r else {
            return Err("CLUSTER SLOTS: range is not an array".into());
        };
        let port_of = |v: &redis::Value| match v {
            redis::Value::Array(n) if n.len() >= 2 => as_int(&n[1]).map(|p| p as u16),
            _ => None,
        };
        let (Some(start), Some(end), Some(master)) = (
            items.first().and_then(as_int),
            items.get(1).and_then(as_int),
            items.get(2).and_then(port_of),
        ) else {
            return Err("CLUSTER SLOTS: bad range".into());
        };
        let replicas = items[3..].iter().filter_map(port_of).collect();
        out.push((start as u16, end as u16, master, replicas));
    }
    Ok(out)
}

/// Starts 6 nodes with the module, makes them a cluster with
/// `redis-cli --cluster create ... --cluster-replicas 1`, waits until every
/// node reports `cluster_state:ok` and agrees on the slot map, and every
/// replica has synced. `pin` is called with each server PID.
pub fn start(pin: &dyn Fn(u32)) -> Result<Cluster, String> {
    let redis_cli = ["redis-cli", "valkey-cli"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .ok_or("no redis-cli or valkey-cli on PATH")?;
    let mut nodes = Vec::new();
    for _ in 0..6 {
        let s = Server::start(
            ServerOptions::default()
                .arg("--cluster-enabled")
                .arg("yes")
                .arg("--cluster-config-file")
                .arg("nodes.conf")
                .arg("--cluster-node-timeout")
                .arg("5000"),
        );
        if let Some(pid) = s.pid() {
            pin(pid);
        }
        nodes.push(s);
    }
    let mut create = Command::new(redis_cli);
    create.arg("--cluster").arg("create");
    for n in &nodes {
        create.arg(format!("127.0.0.1:{}", n.port()));
    }
    create.args(["--cluster-replicas", "1", "--cluster-yes"]);
    let out = create
        .output()
        .map_err(|e| format!("{redis_cli} --cluster create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{redis_cli} --cluster create failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ));
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut map;
    loop {
        if Instant::now() > deadline {
            return Err("cluster did not become ready within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
        if !nodes.iter().all(cluster_info_ok) {
            continue;
        }
        map = cluster_slots(&nodes[0])?;
        map.sort();
        let mut agree = true;
        for n in &nodes[1..] {
            let mut m = cluster_slots(n)?;
            m.sort();
            agree &= m == map;
        }
        let replicas_placed = map.iter().all(|r| r.3.len() == 1);
        if !agree || !replicas_placed {
            continue;
        }
        // Every replica synced with its master.
        let synced = nodes.iter().all(|n| {
            let mut c = n.conn();
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut c)
                .unwrap_or_default();
            info_field(&info, "role").as_deref() == Some("master")
                || info_field(&info, "master_link_status").as_deref() == Some("up")
        });
        if synced {
            break;
        }
    }

    let mut master_ports: Vec<u16> = map.iter().map(|r| r.2).collect();
    master_ports.sort();
    master_ports.dedup();
    if master_ports.len() != 3 {
        return Err(format!("expected 3 masters, got {master_ports:?}"));
    }
    let mut slot_master = vec![u8::MAX; 16384];
    for (start, end, master, _) in &map {
        let m = master_ports.iter().position(|p| p == master).unwrap() as u8;
        for s in *start..=*end {
            slot_master[s as usize] = m;
        }
    }
    if slot_master.contains(&u8::MAX) {
        return Err("some slots have no master".into());
    }
    let masters = master_ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let cluster = Cluster {
        nodes,
        masters,
        slot_master,
    };
    // Our key_slot must agree with the server's on keys like the ones we send.
    let mut c = cluster.nodes[0].conn();
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
    Ok(cluster)
}
