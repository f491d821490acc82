//! When is a cluster ready for the next step: every running node agrees on
//! the topology, serves every slot, and every replica is in sync.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::topology::parse_cluster_nodes;
use super::{Cluster, ClusterNode, HEALTHY_TIMEOUT};
use crate::key_slot::SLOTS;
use crate::server::{info_field, lists_replica_online, replica_in_sync, wait_until};

impl Cluster {
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
                        if !lists_replica_online(&repl, r.port) {
                            return Some(format!(
                                "master {addr} does not list {} online",
                                r.addr()
                            ));
                        }
                    }
                }
                Some(_) => {
                    if !replica_in_sync(&repl) {
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
}
