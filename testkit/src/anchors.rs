//! The reference implementations ("anchors") that the compatibility tests
//! run side by side with redis-shield: redis-cell 0.5.0 (`CL.THROTTLE`, a
//! module for Redis 7.0) and a Redis unstable build that serves the native
//! `GCRA` command. They are third-party code, built from the sources kept
//! beside this repository (`../shared/anchors/`) by `build-anchors.sh`, never
//! copied into it.
//!
//! Environment: `SHIELD_REDIS_CELL` (the redis-cell module),
//! `SHIELD_GCRA_SERVER` (the redis-server with native GCRA),
//! `SHIELD_REDIS7_BIN` (the Redis 7.0 that redis-cell targets; default
//! `/usr/bin/redis-server`). Without them the anchors are looked for where
//! `build-anchors.sh` puts them by default, `~/.cache/redis-shield-anchors/`.
//! A missing anchor is a test failure that names the command that builds it,
//! never a silent skip.

use std::path::{Path, PathBuf};

use crate::server::{repo_root, ServerOptions};

/// Where `build-anchors.sh` puts the anchors by default.
fn default_out() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/redis-shield-anchors")
}

/// The command that builds the anchors (the shared folder is beside the repository).
pub fn build_command() -> String {
    let script = repo_root().join("../shared/anchors/build-anchors.sh");
    let script = script.canonicalize().unwrap_or(script);
    format!(
        "bash {} \"$HOME/.cache/redis-shield-anchors\" all",
        script.display()
    )
}

/// `$env` if set, else `default`; when the file is missing, an error
/// saying which path was looked at (`"{what} is missing: {path} does not
/// exist."`), for the caller to add how to build it.
fn anchor(env: &str, default: PathBuf, what: &str) -> Result<PathBuf, String> {
    let (path, from_env) = match std::env::var_os(env) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (default, false),
    };
    if path.is_file() {
        return Ok(path);
    }
    let origin = if from_env {
        format!("{env}={}", path.display())
    } else {
        format!("{} (set {env} to use another)", path.display())
    };
    Err(format!("{what} is missing: {origin} does not exist."))
}

/// Panics with `missing` and the command that builds the anchors.
fn or_build(found: Result<PathBuf, String>) -> PathBuf {
    found.unwrap_or_else(|missing| {
        panic!(
            "{missing} Build the reference implementations with:\n    {}",
            build_command()
        )
    })
}

/// The redis-cell 0.5.0 module (`libredis_cell.so`), or why it is missing.
pub fn find_redis_cell_module() -> Result<PathBuf, String> {
    anchor(
        "SHIELD_REDIS_CELL",
        default_out().join("redis-cell/libredis_cell.so"),
        "the redis-cell module (CL.THROTTLE reference)",
    )
}

/// The redis-server built with the native `GCRA` command, or why it is missing.
pub fn find_gcra_server() -> Result<PathBuf, String> {
    anchor(
        "SHIELD_GCRA_SERVER",
        default_out().join("redis-gcra/redis-server"),
        "the redis-server with native GCRA (GCRA reference)",
    )
}

/// The redis-cell 0.5.0 module (`libredis_cell.so`).
pub fn redis_cell_module() -> PathBuf {
    or_build(find_redis_cell_module())
}

/// The redis-server built with the native `GCRA` command.
pub fn gcra_server() -> PathBuf {
    or_build(find_gcra_server())
}

/// The Redis 7.0 binary that redis-cell 0.5.0 targets: `$SHIELD_REDIS7_BIN`,
/// else `/usr/bin/redis-server` (Debian 12's Redis 7.0), whatever
/// `SHIELD_SERVER_BIN` says; or why it is missing.
pub fn find_redis7_binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("SHIELD_REDIS7_BIN")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} does not exist: redis-cell runs on Redis 7.0 (`apt-get install redis-server`, \
             or set SHIELD_REDIS7_BIN)",
            path.display()
        ))
    }
}

/// The Redis 7.0 binary that redis-cell 0.5.0 targets (see [`find_redis7_binary`]).
pub fn redis7_binary() -> PathBuf {
    find_redis7_binary().unwrap_or_else(|missing| panic!("{missing}"))
}

/// Options for a Redis 7.0 server with redis-cell loaded (and not this module).
pub fn redis_cell_options() -> ServerOptions {
    ServerOptions::default()
        .without_module()
        .binary(redis7_binary())
        .arg("--loadmodule")
        .arg(path_arg(&redis_cell_module()))
}

/// Options for a Redis 7.0 server with this module loaded (the same binary as
/// [`redis_cell_options`]: a data directory can move between the two).
pub fn redis7_shield_options() -> ServerOptions {
    ServerOptions::default().binary(redis7_binary())
}

/// Options for the server with the native `GCRA` (no module).
pub fn native_gcra_options() -> ServerOptions {
    ServerOptions::default()
        .without_module()
        .binary(gcra_server())
}

fn path_arg(p: &Path) -> String {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", p.display()))
        .to_string()
}
