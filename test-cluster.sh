#!/usr/bin/env bash
# test-cluster.sh: see redis-shield work on a real 6-node Redis Cluster.
#
#   ./test-cluster.sh [--docker | --podman] [--keep] [--port BASE] [-- <cargo test args>]
#   ./test-cluster.sh --stop [--docker | --podman]
#
# 1. builds the release module (target/release/libredis_shield.so);
# 2. starts 6 nodes (3 masters + 3 replicas) with the options of
#    cluster-node.conf: local redis-server processes by default (ports 7001-7006
#    if free, else the next free block of 100), or the containers of
#    docker-compose.cluster.yml with --docker (Docker Compose) or --podman
#    (podman-compose; scripts/podman-setup.sh installs both) (ports 7001-7006,
#    which must be free);
# 3. creates the cluster (redis-cli --cluster create ... --cluster-replicas 1)
#    and waits until every node reports cluster_state:ok and replicas are in sync;
# 4. checks that the module is loaded on every node;
# 5. runs `cargo test --features cluster-tests` against it (REDIS_CLUSTER_URLS);
#    extra arguments after `--` go to cargo test, e.g. `-- --test cluster`;
# 6. prints how to connect, and tears everything down unless --keep is given
#    (`./test-cluster.sh --stop` stops a kept cluster).
#
# Idempotent: the local nodes' PIDs are recorded in target/test-cluster/pids;
# a run first stops the nodes a previous (interrupted or --keep) run left
# there, by PID, after checking that each PID still is one of our nodes.
#
# Environment: SHIELD_SERVER_BIN (default: redis-server, else valkey-server on
# PATH), SHIELD_REDIS_CLI (default: redis-cli, else valkey-cli on PATH),
# SHIELD_REDIS_IMAGE (--docker/--podman only; see docker-compose.cluster.yml),
# SHIELD_PODMAN_COMPOSE (--podman: the podman-compose command; default: on PATH,
# else the virtualenv of scripts/podman-setup.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
cd "$ROOT"
STATE="$ROOT/target/test-cluster"
PIDS="$STATE/pids"
COMPOSE_FILE="$ROOT/docker-compose.cluster.yml"
CONF="$ROOT/cluster-node.conf"
MODULE="$ROOT/target/release/libredis_shield.so"
NODES=6
TIMEOUT=60 # seconds to wait for a node / the cluster

log() { printf '[test-cluster] %s\n' "$*"; }
die() {
    printf '[test-cluster] ERROR: %s\n' "$*" >&2
    exit 1
}
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

DOCKER=0 PODMAN=0 KEEP=0 STOP=0 BASE=""
CARGO_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --docker) DOCKER=1 ;;
        --podman) DOCKER=1 PODMAN=1 ;;
        --keep) KEEP=1 ;;
        --stop) STOP=1 ;;
        --port)
            [ $# -ge 2 ] || die "--port needs a number"
            BASE="$2"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            CARGO_ARGS=("$@")
            break
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

# ---------------------------------------------------------------------------
# Polling helpers (no fixed sleeps: check a condition every 50 ms until a deadline)
# ---------------------------------------------------------------------------

# wait_for <what> <command...>: poll the command until it succeeds, or die.
wait_for() {
    local what="$1" deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
        sleep 0.05
    done
}

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------

find_tool() { # find_tool <env override> <name>...: absolute path or ""
    local override="$1"
    shift
    if [ -n "$override" ]; then
        case "$override" in
            # Absolute, but symlinks kept: Debian's redis-server is a symlink
            # to redis-check-rdb, which acts on the name it was started as.
            */*) if [ -x "$override" ]; then realpath -s "$override"; fi ;;
            *) command -v "$override" 2>/dev/null || true ;;
        esac
        return
    fi
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return
        fi
    done
}
SERVER="$(find_tool "${SHIELD_SERVER_BIN:-}" redis-server valkey-server)"
CLI="$(find_tool "${SHIELD_REDIS_CLI:-}" redis-cli valkey-cli)"

need_local_tools() {
    if [ -z "$SERVER" ]; then
        die "redis-server not found${SHIELD_SERVER_BIN:+ (SHIELD_SERVER_BIN=$SHIELD_SERVER_BIN)}. \
Install it (Debian/Ubuntu: apt-get install redis-server), or run bash scripts/install-servers.sh \
and set SHIELD_SERVER_BIN=\$PWD/.servers/redis-8.2/redis-server, or use --docker."
    fi
    if [ -z "$CLI" ]; then
        die "redis-cli not found${SHIELD_REDIS_CLI:+ (SHIELD_REDIS_CLI=$SHIELD_REDIS_CLI)}: it creates the \
cluster. Install it (Debian/Ubuntu: apt-get install redis-tools) or set SHIELD_REDIS_CLI."
    fi
}

# ---------------------------------------------------------------------------
# Local processes
# ---------------------------------------------------------------------------

# Stop the nodes recorded in $PIDS by a previous run. A PID is only signalled
# if that process still runs in one of our node directories (its working
# directory: redis-server chdirs to --dir), so a recycled PID is never hit.
stop_local() { # stop_local <what is being stopped, for the log>
    [ -f "$PIDS" ] || return 0
    local pid dir mine=()
    while read -r pid _ dir; do
        [ -n "$pid" ] || continue
        if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$dir" ]; then
            mine+=("$pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$PIDS"
    if [ "${#mine[@]}" -gt 0 ]; then
        log "stopping ${#mine[@]} $1: PIDs ${mine[*]}"
        local deadline=$((SECONDS + 15))
        for pid in "${mine[@]}"; do
            while kill -0 "$pid" 2>/dev/null; do
                if [ "$SECONDS" -ge "$deadline" ]; then
                    kill -KILL "$pid" 2>/dev/null || true
                fi
                sleep 0.05
            done
        done
    fi
    rm -f "$PIDS"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

block_free() { # block_free <base>: the 6 ports and their cluster bus ports (+10000) are free
    local p
    for ((p = $1; p < $1 + NODES; p++)); do
        if port_busy "$p" || port_busy $((p + 10000)); then return 1; fi
    done
}

pick_ports() {
    if [ -n "$BASE" ]; then
        if ! [[ "$BASE" =~ ^[0-9]+$ ]] || [ "$BASE" -lt 1024 ] || [ "$BASE" -gt 55529 ]; then
            die "--port must be a number from 1024 to 55529"
        fi
        block_free "$BASE" || die "a port of $BASE-$((BASE + NODES - 1)) (or its bus port +10000) is in use"
        return
    fi
    local b
    for ((b = 7001; b <= 9901; b += 100)); do
        if block_free "$b"; then
            BASE="$b"
            return
        fi
    done
    die "no free block of $NODES ports between 7001 and 9906; choose one with --port"
}

start_local() {
    need_local_tools
    stop_local "node(s) left by a previous run"
    pick_ports
    rm -rf "$STATE"/node-*
    mkdir -p "$STATE"
    : >"$PIDS"
    log "server: $("$SERVER" --version)"
    local p dir
    for ((p = BASE; p < BASE + NODES; p++)); do
        dir="$STATE/node-$p"
        mkdir -p "$dir"
        "$SERVER" "$CONF" --port "$p" --dir "$dir" --logfile "$dir/server.log" \
            --loadmodule "$MODULE" --daemonize no </dev/null >"$dir/stdout.log" 2>&1 &
        echo "$! $p $dir" >>"$PIDS"
    done
    while read -r pid p dir; do
        local deadline=$((SECONDS + TIMEOUT))
        until [ "$("$CLI" -p "$p" PING 2>/dev/null)" = "PONG" ]; do
            if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
                tail -n 20 "$dir/server.log" "$dir/stdout.log" >&2 2>/dev/null || true
                die "node on port $p did not start (log above: $dir/server.log)"
            fi
            sleep 0.05
        done
    done <"$PIDS"
    log "6 nodes up on ports $BASE-$((BASE + NODES - 1)) (PIDs in $PIDS)"
}

# ---------------------------------------------------------------------------
# Docker
# ---------------------------------------------------------------------------

COMPOSE=()
need_podman() {
    command -v podman >/dev/null 2>&1 \
        || die "--podman: podman is not installed (bash scripts/podman-setup.sh installs and configures it)."
    local err pc="${SHIELD_PODMAN_COMPOSE:-}"
    if ! err="$(podman info 2>&1 >/dev/null)"; then
        die "--podman: podman does not work here ($(printf '%s' "$err" | grep -v '^ *$' | tail -n 1)). \
See bash scripts/podman-setup.sh."
    fi
    if [ -z "$pc" ]; then
        pc="$(command -v podman-compose || true)"
        local venv="${SHIELD_PODMAN_COMPOSE_VENV:-/var/cache/redis-shield/podman-compose}"
        if [ -z "$pc" ] && [ -x "$venv/bin/podman-compose" ]; then pc="$venv/bin/podman-compose"; fi
    fi
    [ -n "$pc" ] || die "--podman: podman-compose not found (bash scripts/podman-setup.sh installs it)."
    COMPOSE=("$pc" -f "$COMPOSE_FILE")
}

need_docker() {
    if [ "$PODMAN" -eq 1 ]; then
        need_podman
        return
    fi
    command -v docker >/dev/null 2>&1 \
        || die "--docker: the docker command is not installed. Run without --docker to use local redis-server processes."
    local err
    if ! err="$(docker info 2>&1 >/dev/null)"; then
        die "--docker: no Docker engine is reachable ($(printf '%s' "$err" | grep -v '^ *$' | tail -n 1)). \
Start the Docker daemon (or set DOCKER_HOST), or run ./test-cluster.sh without --docker to use local redis-server processes."
    fi
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose -f "$COMPOSE_FILE")
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose -f "$COMPOSE_FILE")
    else
        die "--docker: Docker Compose is not installed (neither 'docker compose' nor 'docker-compose')."
    fi
}

start_docker() {
    need_docker
    BASE=7001
    log "${COMPOSE[0]##*/}: removing containers and volumes of a previous run, if any"
    "${COMPOSE[@]}" down -v --remove-orphans
    # Host networking: a node that cannot bind its port exits, and the checks
    # below would then talk to whatever else listens there.
    block_free "$BASE" || die "a port of 7001-7006 or 17001-17006 is in use: the compose \
cluster needs them (stop what listens there, e.g. ./test-cluster.sh --stop)"
    "${COMPOSE[@]}" up -d
}

stop_docker() { "${COMPOSE[@]}" down -v --remove-orphans; }

# ---------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------

# cli <port> <args...>: redis-cli on the host, or inside the first container
# when --docker is used without a local redis-cli.
cli() {
    local p="$1"
    shift
    if [ -n "$CLI" ]; then
        "$CLI" -p "$p" "$@"
    else
        "${COMPOSE[@]}" exec -T node-7001 redis-cli -p "$p" "$@"
    fi
}

# shellcheck disable=SC2317 # called through wait_for
node_ok() { # cluster_state:ok, and a replica's link to its master is up
    local p="$1"
    cli "$p" CLUSTER INFO | grep -q '^cluster_state:ok' || return 1
    local repl
    repl="$(cli "$p" INFO replication)"
    if grep -q '^role:slave' <<<"$repl"; then
        grep -q '^master_link_status:up' <<<"$repl" || return 1
    fi
}

create_cluster() {
    local addrs=() p
    for ((p = BASE; p < BASE + NODES; p++)); do addrs+=("127.0.0.1:$p"); done
    log "redis-cli --cluster create ${addrs[*]} --cluster-replicas 1 --cluster-yes"
    # Bounded: an orphaned redis-cli (script killed mid-way, nodes gone) must not wait forever.
    if ! timeout "$TIMEOUT" "$CLI" --cluster create "${addrs[@]}" --cluster-replicas 1 \
        --cluster-yes </dev/null >"$STATE/create.log" 2>&1; then
        cat "$STATE/create.log" >&2
        die "redis-cli --cluster create failed"
    fi
}

wait_healthy() {
    local p
    for ((p = BASE; p < BASE + NODES; p++)); do
        wait_for "node $p: cluster_state:ok and replica in sync" node_ok "$p"
    done
    log "cluster_state:ok on all $NODES nodes"
}

check_module() {
    local p role missing=0
    for ((p = BASE; p < BASE + NODES; p++)); do
        role="$(cli "$p" ROLE | head -n 1)"
        if cli "$p" MODULE LIST | grep -qx shield; then
            log "  127.0.0.1:$p  $role  module shield loaded"
        else
            log "  127.0.0.1:$p  $role  MODULE NOT LOADED"
            missing=1
        fi
    done
    [ "$missing" -eq 0 ] || die "the module is not loaded on every node"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

if [ "$STOP" -eq 1 ]; then
    stop_local "local node(s)"
    if [ "$DOCKER" -eq 1 ]; then
        need_docker
        stop_docker
    fi
    log "stopped"
    exit 0
fi

if [ "$DOCKER" -eq 1 ]; then
    need_docker # fail before the (long) build when Docker cannot work
else
    need_local_tools
fi

log "building the release module"
cargo build --release --lib
[ -f "$MODULE" ] || die "cargo build did not produce $MODULE"
mkdir -p "$STATE"

# shellcheck disable=SC2317 # called by the EXIT trap
teardown() {
    local status=$?
    if [ "$KEEP" -eq 1 ]; then
        return
    fi
    log "tearing the cluster down"
    if [ "$DOCKER" -eq 1 ]; then
        stop_docker || true
    else
        stop_local "node(s) of this run"
    fi
    return "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

if [ "$DOCKER" -eq 1 ]; then
    start_docker
    wait_for "the six containers to answer" cli 7006 PING
    # The one-shot cluster-create service creates the cluster.
else
    start_local
    create_cluster
fi
wait_healthy
log "module check:"
check_module

URLS=""
for ((p = BASE; p < BASE + NODES; p++)); do URLS+="${URLS:+,}redis://127.0.0.1:$p"; done
log "running: REDIS_CLUSTER_URLS=$URLS cargo test --features cluster-tests ${CARGO_ARGS[*]}"
if [ "$DOCKER" -eq 1 ] && [ -z "$SERVER" ]; then
    log "NOTE: no local redis-server: the tests that must SIGKILL or restart a node (they start"
    log "      their own local cluster) and the single-server tests will fail."
fi
set +e
env REDIS_CLUSTER_URLS="$URLS" SHIELD_MODULE="$MODULE" \
    ${SERVER:+SHIELD_SERVER_BIN="$SERVER"} ${CLI:+SHIELD_REDIS_CLI="$CLI"} \
    cargo test --features cluster-tests "${CARGO_ARGS[@]}"
status=$?
set -e

echo
if [ "$status" -eq 0 ]; then
    log "tests passed"
else
    log "tests FAILED (exit status $status)"
fi
log "the cluster: 127.0.0.1:$BASE-$((BASE + NODES - 1)); connect with:"
log "    redis-cli -c -p $BASE"
log "    redis-cli -c -p $BASE SHIELD.absorb user123 30 60 13"
if [ "$KEEP" -eq 1 ]; then
    stop_hint="./test-cluster.sh --stop"
    if [ "$PODMAN" -eq 1 ]; then
        stop_hint+=" --podman"
    elif [ "$DOCKER" -eq 1 ]; then
        stop_hint+=" --docker"
    fi
    log "kept running (--keep); stop it with: $stop_hint"
else
    log "(it is stopped now; run with --keep to keep it running)"
fi
exit "$status"
