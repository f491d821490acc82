//! Who is who in the cluster: `CLUSTER NODES`, parsed, and the questions the
//! tests ask of it (masters, replicas, the owner of a slot).

use std::time::Duration;

use super::Cluster;

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

impl Cluster {
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

    /// `CLUSTER NODES` of one node, parsed.
    pub(crate) fn try_topology_of(
        &self,
        host: &str,
        port: u16,
    ) -> redis::RedisResult<Vec<ClusterNode>> {
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

    /// The first master (by port) other than `node`: a target to move its slots to.
    pub fn another_master(&self, node: &ClusterNode) -> ClusterNode {
        self.masters()
            .into_iter()
            .find(|m| m.id != node.id)
            .unwrap_or_else(|| panic!("no master other than {}", node.addr()))
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
}
