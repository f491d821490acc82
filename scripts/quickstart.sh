#!/usr/bin/env bash
# Quick start on a Debian/Ubuntu machine that has only Rust: install what is
# missing, build the module, and run Redis with it in the foreground.
#
#   bash scripts/quickstart.sh [--port PORT]
#
# 1. apt (when missing; apt-get update first; sudo when not root): clang and
#    libclang-dev (bindgen, for the build), gcc and libc6-dev (the linker),
#    ca-certificates (crates.io), redis-server and redis-tools (the server and
#    redis-cli; Debian's package also starts its own service on 6379 where
#    an init system runs, which is why the port below may be another);
# 2. cargo build --release -p redis-shield  ->  target/release/libredis_shield.so;
# 3. redis-server --port PORT --loadmodule target/release/libredis_shield.so
#    in the foreground (data in target/quickstart/), after printing how to
#    connect. PORT: 6379 if free, else the next free one (--port to choose).
#    Ctrl-C stops it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
log() { printf '[quickstart] %s\n' "$*"; }
die() {
    printf '[quickstart] ERROR: %s\n' "$*" >&2
    exit 1
}

PORT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --port)
            [ $# -ge 2 ] || die "--port needs a number"
            PORT="$2"
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

command -v cargo >/dev/null 2>&1 \
    || die "cargo not found: install Rust first (https://rustup.rs), then run this again"

# --- 1. Debian packages ---------------------------------------------------------
APT_PKGS=(clang libclang-dev gcc libc6-dev ca-certificates redis-server redis-tools)
missing=()
for p in "${APT_PKGS[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${missing[*]} and no apt-get: install libclang, a C compiler and Redis by hand"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
    log "apt: installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    log "apt: ${APT_PKGS[*]} already installed"
fi
SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
[ -x "$SERVER" ] || die "redis-server not found after installing redis-server"

# --- 2. build -------------------------------------------------------------------
log "cargo build --release -p redis-shield"
cargo build --release -p redis-shield
MODULE="$REPO/target/release/libredis_shield.so"
[ -f "$MODULE" ] || die "cargo build did not produce $MODULE"

# --- 3. run ---------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "$PORT" ]; then
    for ((PORT = 6379; PORT < 6479; PORT++)); do
        port_busy "$PORT" || break
    done
fi
if ! [[ "$PORT" =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
    die "bad port: $PORT"
fi
if port_busy "$PORT"; then die "port $PORT is in use (choose one with --port)"; fi
DATA="$REPO/target/quickstart"
mkdir -p "$DATA"

cat <<MSG

[quickstart] $("$SERVER" --version)
[quickstart] starting it on 127.0.0.1:$PORT with the module; in another terminal:

    redis-cli -p $PORT SHIELD.absorb user123 30 60 13     # 17, then 4, then -1
    redis-cli -p $PORT MODULE LIST

[quickstart] data in $DATA; Ctrl-C stops the server.

MSG
exec "$SERVER" --port "$PORT" --bind 127.0.0.1 --dir "$DATA" --loadmodule "$MODULE"
