//! The nodes' options (`cluster-node.conf`, shared with test-cluster.sh and
//! docker-compose.cluster.yml) and the cluster management client.

use std::path::PathBuf;

use super::CLUSTER_URLS_ENV;
use crate::server::{find_on_path, repo_root};

/// `cluster-node.conf` at the repository root: the options every node gets.
pub fn node_conf_path() -> PathBuf {
    repo_root().join("cluster-node.conf")
}

/// The `(name, value)` options of `cluster-node.conf`, in file order.
/// Comment and blank lines are skipped; `""` is the empty value.
pub fn node_conf_options() -> Vec<(String, String)> {
    let path = node_conf_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_conf(&text)
}

/// Parse `name value` config lines (the subset of redis.conf syntax used by
/// cluster-node.conf: one option per line, a value that is a plain word,
/// several words, or `""`).
pub fn parse_conf(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let value = value.trim();
            let value = if value == "\"\"" { "" } else { value };
            (name.to_lowercase(), value.to_string())
        })
        .collect()
}

/// The cluster management client: `$SHIELD_REDIS_CLI`, else `redis-cli`, else
/// `valkey-cli` on PATH. (Debian's redis-cli 7.0 also creates Redis 8 and
/// Valkey 9 clusters.)
pub fn redis_cli() -> PathBuf {
    if let Some(cli) = std::env::var_os("SHIELD_REDIS_CLI") {
        let cli = PathBuf::from(cli);
        assert!(
            cli.is_file(),
            "SHIELD_REDIS_CLI={} does not exist",
            cli.display()
        );
        return cli;
    }
    find_on_path(&["redis-cli", "valkey-cli"]).unwrap_or_else(|| {
        panic!(
            "no redis-cli or valkey-cli found: clusters are created with \
             `redis-cli --cluster create`. Install it (`apt-get install redis-tools`), put it on \
             PATH or set SHIELD_REDIS_CLI, or point {CLUSTER_URLS_ENV} at a running cluster"
        )
    })
}
