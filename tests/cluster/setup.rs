//! The module on every node; the kit's own parsing (CLUSTER NODES, key
//! slots); docker-compose.cluster.yml against cluster-node.conf.

use serial_test::serial;
use shield_testkit::cluster::{
    node_conf_options, node_conf_path, parse_cluster_nodes, MASTERS, NODES,
};
use shield_testkit::{key_slot, Cluster, ClusterNode, ShieldCommands};

use crate::{flatten, module_listed};

#[test]
#[serial]
fn module_is_loaded_on_every_node() {
    let cluster = Cluster::for_test();
    let nodes = cluster.topology();
    let masters: Vec<&ClusterNode> = nodes.iter().filter(|n| n.is_master()).collect();
    if cluster.is_external() {
        eprintln!(
            "external cluster: {} nodes, {} masters",
            nodes.len(),
            masters.len()
        );
    } else {
        assert_eq!(nodes.len(), NODES, "{nodes:?}");
        assert_eq!(masters.len(), MASTERS, "{nodes:?}");
        for m in &masters {
            let replicas = nodes
                .iter()
                .filter(|n| n.master_id.as_deref() == Some(&m.id))
                .count();
            assert_eq!(replicas, 1, "replicas of {}", m.addr());
        }
    }
    assert_eq!(
        masters.iter().map(|m| m.slot_count()).sum::<usize>(),
        16384,
        "all slots served"
    );

    for node in &nodes {
        let addr = node.addr();
        let mut c = cluster.conn_to(node);
        // MODULE LIST names the module.
        let (listed, words) = module_listed(&mut c);
        assert!(
            listed,
            "module not loaded on {addr}: MODULE LIST = {words:?}"
        );
        // The command is registered with its flags and its key at position 1.
        let cmd_info = c.command_info("SHIELD.absorb");
        let mut words = vec![];
        flatten(&cmd_info, &mut words);
        assert_eq!(
            words.first().map(|w| w.to_lowercase()).as_deref(),
            Some("shield.absorb")
        );
        assert_eq!(
            &words[1..5],
            ["-4", "write", "denyoom", "module"],
            "{addr}: {words:?}"
        );
        assert!(words.iter().any(|w| w == "fast"), "{addr}: {words:?}");
        // COMMAND GETKEYS finds the key (what cluster routing and ACLs use).
        let keys: Vec<String> = redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg("SHIELD.absorb")
            .arg("some:key")
            .arg(10)
            .arg(60)
            .query(&mut c)
            .unwrap();
        assert_eq!(keys, ["some:key"], "{addr}");
        // The INFO section exists.
        let shield = c.info_section("shield");
        assert!(
            shield.contains("shield_calls:"),
            "{addr}: INFO shield = {shield}"
        );
        eprintln!(
            "{addr} {:<7} module loaded",
            if node.is_master() {
                "master"
            } else {
                "replica"
            }
        );
    }
}

// The kit's parsing, and docker-compose.cluster.yml

#[test]
fn cluster_nodes_lines_are_parsed() {
    let text = "\
07c3 127.0.0.1:30004@40004 slave e0c8 0 1795564915306 1 connected\n\
e0c8 127.0.0.1:30001@40001,host-a myself,master - 0 0 1 connected 0-5460 [5461->-e8d3]\n\
e8d3 127.0.0.1:30002@40002 master,fail? - 0 1795564915306 2 connected 5461 5462-10922\n";
    let nodes = parse_cluster_nodes(text);
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0].master_id.as_deref(), Some("e0c8"));
    assert!(!nodes[0].is_master() && !nodes[0].myself);
    assert_eq!(
        (nodes[1].host.as_str(), nodes[1].port),
        ("127.0.0.1", 30001)
    );
    assert!(nodes[1].myself && nodes[1].is_master() && !nodes[1].is_failing());
    assert_eq!(nodes[1].slots, [(0, 5460)]);
    assert!(nodes[2].is_failing());
    assert_eq!(nodes[2].slots, [(5461, 5461), (5462, 10922)]);
    assert_eq!(nodes[2].slot_count(), 10922 - 5461 + 1);
    // Hash slots, including the hash-tag rules (values from CLUSTER KEYSLOT).
    assert_eq!(key_slot(b"a"), 15495);
    assert_eq!(key_slot(b"{u}b"), key_slot(b"u"));
}

/// The node options of docker-compose.cluster.yml are those of the local
/// harness: both take them from cluster-node.conf, and the compose file adds
/// nothing but the port and the module per node.
#[test]
fn docker_compose_nodes_use_the_same_options_as_the_harness() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose = std::fs::read_to_string(root.join("docker-compose.cluster.yml")).unwrap();
    let conf = node_conf_options();
    let get = |name: &str| {
        conf.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    // What the tests rely on.
    assert_eq!(get("cluster-enabled"), Some("yes"));
    assert_eq!(get("appendonly"), Some("yes"));
    assert!(get("cluster-node-timeout").is_some());
    assert!(get("port").is_none() && get("dir").is_none() && get("loadmodule").is_none());
    assert_eq!(node_conf_path(), root.join("cluster-node.conf"));

    // The compose file mounts that file read-only, and the module read-only.
    let conf_in_container = "/redis-shield/cluster-node.conf";
    let module_in_container = "/redis-shield/libredis_shield.so";
    assert!(compose.contains(&format!("./cluster-node.conf:{conf_in_container}:ro")));
    assert!(compose.contains(&format!(
        "./target/release/libredis_shield.so:{module_in_container}:ro"
    )));
    assert!(compose.contains("network_mode: host"));

    // Six node services, ports 7001-7006, each started as
    // `redis-server <conf> --port <port> --loadmodule <module>` and nothing else.
    let commands: Vec<&str> = compose
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("command: [\"redis-server\""))
        .collect();
    assert_eq!(commands.len(), NODES, "{commands:?}");
    for (i, port) in (7001..=7006).enumerate() {
        assert!(
            compose.contains(&format!("\n  node-{port}:\n")),
            "service node-{port}"
        );
        assert_eq!(
            commands[i],
            format!(
                "command: [\"redis-server\", \"{conf_in_container}\", \"--port\", \"{port}\", \
                 \"--loadmodule\", \"{module_in_container}\"]"
            )
        );
    }
    // The one-shot service creates the cluster from those six nodes.
    let addrs: Vec<String> = (7001..=7006).map(|p| format!("127.0.0.1:{p}")).collect();
    assert!(
        compose.contains(&format!("--cluster create {}", addrs.join(" "))),
        "cluster create command"
    );
    assert!(compose.contains("--cluster-replicas 1 --cluster-yes"));

    // And the file is valid YAML with that structure.
    let check = r#"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
nodes = [f"node-{p}" for p in range(7001, 7007)]
assert sorted(services) == sorted(nodes + ["cluster-create"]), sorted(services)
for name in nodes + ["cluster-create"]:
    s = services[name]
    assert s["network_mode"] == "host", name
    assert s["image"], name
for name in nodes:
    s = services[name]
    assert s["command"][:3] == ["redis-server", "/redis-shield/cluster-node.conf", "--port"], s
    assert s["command"][3] == name[5:], s
    assert all(v.endswith(":ro") for v in s["volumes"]), s
assert services["cluster-create"]["restart"] == "no"
print("docker-compose.cluster.yml: valid YAML,", len(services), "services")
"#;
    let file = root.join("docker-compose.cluster.yml");
    let has_yaml = std::process::Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_yaml,
        "python3 with PyYAML is needed to parse docker-compose.cluster.yml: \
         `python3 -m pip install pyyaml` (or apt-get install python3-yaml)"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", check])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-compose.cluster.yml check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}
