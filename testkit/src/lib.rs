//! redis-shield's test kit (dev-only): what the integration tests in
//! `tests/` and the benchmark in `benches/` share.
//!
//! * [`server`]: throw-away servers with the freshly built module
//!   ([`Server`], [`ServerOptions`]), and polling helpers;
//! * [`pair`]: a master and a synced replica ([`Pair`]);
//! * [`cluster`]: a real 6-node Redis Cluster ([`Cluster`]), its topology,
//!   health, and slot migrations;
//! * [`shield`]: the SHIELD.* commands on any connection ([`ShieldCommands`]);
//! * [`functions`]: the same operations through the module or the Functions
//!   library `functions/shield.lua` ([`functions::Engine`]), and
//!   [`engine_tests!`], one `#[test]` per engine for each case;
//! * [`compat`]: what the compatibility tests share (servers side by side,
//!   the tally of explained differences, random sequences, the timing guard);
//! * [`rng`]: the seeded random generator ([`Rng`], `SHIELD_TEST_SEED`);
//! * [`key_slot`]: Redis Cluster's key -> hash slot mapping.
//!
//! Environment: `SHIELD_SERVER_BIN` (the server binary), `SHIELD_MODULE` (a
//! module to load instead of building this tree's), `SHIELD_REDIS_CLI`,
//! `REDIS_CLUSTER_URLS` (an existing cluster for the cluster tests),
//! `SHIELD_TEST_SEED`.

pub mod anchors;
pub mod cluster;
pub mod compat;
pub mod functions;
pub mod key_slot;
pub mod pair;
pub mod rng;
pub mod server;
pub mod shield;

pub use cluster::{Cluster, ClusterNode, ClusterOptions};
pub use key_slot::{key_slot, SLOTS};
pub use pair::Pair;
pub use rng::Rng;
pub use server::{
    info_field, module_path, read_aof, read_aof_when, repo_root, server_binary,
    server_version_info, wait_for_replication, wait_until, Server, ServerOptions,
};
pub use shield::{
    absorb_cmd, keys_of_other_types, AbsorbAllReply, ShieldCommands, MALFORMED_NUMBERS,
};
