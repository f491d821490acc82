#!/usr/bin/env bash
# Make rootful Podman and podman-compose ready on Debian 12 (as root; CI runs it).
#
#   bash scripts/podman-setup.sh
#
# 1. apt: podman, runc, mmdebstrap (when missing; apt-get update first);
# 2. /etc/containers/containers.conf, written when missing (a file this script
#    wrote is kept up to date; another one is left alone, with a warning if it
#    lacks these settings):
#      [containers] default_ulimits = ["nofile=H:H", "nproc=32768:32768"]
#          H = `ulimit -Hn`: Podman asks for 1048576 open files by default, and
#          a root that cannot raise its limits (a container or sandbox, like
#          the project's machines) then cannot start any container;
#      [engine] runtime = "runc"
#          crun 1.8 (Debian 12) refuses a hybrid cgroup v1/v2 layout;
# 3. podman-compose (PyPI, pinned) in a virtualenv:
#    $SHIELD_PODMAN_COMPOSE_VENV/bin/podman-compose (see scripts/podman-env.sh);
# 4. checks that `podman info` works and prints the storage driver and runtime.
#
# Idempotent: what is there already is left alone. Fails on the first error.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/podman-env.sh
. "$REPO/scripts/podman-env.sh"

log() { printf '[podman-setup] %s\n' "$*"; }
die() {
    printf '[podman-setup] ERROR: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run it as root (rootful Podman, apt, /etc/containers): sudo bash $0"

# --- 1. Debian packages ---------------------------------------------------------
APT_PKGS=(podman runc mmdebstrap)
missing=()
for p in "${APT_PKGS[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null
    apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
else
    log "apt: ${APT_PKGS[*]} already installed"
fi

# --- 2. containers.conf ---------------------------------------------------------
CONF=/etc/containers/containers.conf
MARK="# Written by redis-shield scripts/podman-setup.sh"
H="$(ulimit -Hn)"
if [ "$H" = unlimited ]; then H=1048576; fi
want="$MARK (rewritten by it; remove this line to keep your own edits).
[containers]
# Podman asks for 1048576 open files by default; a root that cannot raise
# its limits cannot start a container with that. The hard limit here: $H.
default_ulimits = [\"nofile=$H:$H\", \"nproc=32768:32768\"]

[engine]
# crun 1.8 (Debian 12) refuses a hybrid cgroup v1/v2 layout; runc works.
runtime = \"runc\""
if [ ! -e "$CONF" ] || { head -n 1 "$CONF" | grep -qF "$MARK" && [ "$(cat "$CONF")" != "$want" ]; }; then
    log "writing $CONF (nofile=$H:$H, runtime runc)"
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$want" >"$CONF"
elif head -n 1 "$CONF" | grep -qF "$MARK"; then
    log "$CONF: up to date"
else
    log "$CONF exists and is not ours: left alone"
    grep -q '^ *default_ulimits' "$CONF" \
        || log "WARNING: it sets no default_ulimits; if containers fail with 'setrlimit', add under [containers]: default_ulimits = [\"nofile=$H:$H\", \"nproc=32768:32768\"]"
    grep -q '^ *runtime *=' "$CONF" \
        || log "WARNING: it sets no [engine] runtime; if crun fails here, add under [engine]: runtime = \"runc\""
fi

# --- 3. podman-compose ----------------------------------------------------------
VENV="$SHIELD_PODMAN_COMPOSE_VENV"
PC="$VENV/bin/podman-compose"
if "$PC" --version 2>/dev/null | grep -qF "podman-compose version $SHIELD_PODMAN_COMPOSE_VERSION"; then
    log "podman-compose $SHIELD_PODMAN_COMPOSE_VERSION: $PC already installed"
else
    log "podman-compose $SHIELD_PODMAN_COMPOSE_VERSION: installing into $VENV"
    PYTHON="$(command -v python3 || true)"
    [ -n "$PYTHON" ] || die "python3 is needed for podman-compose (apt-get install python3 python3-venv)"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" </dev/null; then
        log "python3 -m venv failed: installing python3-venv"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends python3-venv </dev/null
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV" </dev/null
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "podman-compose==$SHIELD_PODMAN_COMPOSE_VERSION" </dev/null
fi
"$PC" --version | sed 's/^/[podman-setup]   /'

# --- 4. check -------------------------------------------------------------------
if ! info="$(podman info --format '{{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}} {{.Host.CgroupsVersion}}' 2>&1)"; then
    printf '%s\n' "$info" >&2
    die "podman info failed (see above). If the overlay storage driver is the cause, set
driver = \"vfs\" under [storage] in /etc/containers/storage.conf (slower, more disk) and run podman system reset."
fi
read -r driver runtime cgroups <<<"$info"
log "podman $(podman version --format '{{.Client.Version}}'): storage $driver, runtime $runtime, cgroups $cgroups"
[ "$runtime" = runc ] || log "WARNING: the OCI runtime is $runtime, not runc"
