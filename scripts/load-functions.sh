#!/usr/bin/env bash
# Load redis-shield's Functions library (functions/shield.lua) into a server
# that cannot load the module, or into every master of a Redis Cluster.
#
#   bash scripts/load-functions.sh [-h HOST] [-p PORT] [--file PATH] [-- REDIS-CLI-OPTIONS...]
#       e.g. bash scripts/load-functions.sh -p 6379
#            bash scripts/load-functions.sh -h 10.0.0.5 -p 7000 -- --user admin --pass s3cret
#            REDISCLI_AUTH=s3cret bash scripts/load-functions.sh -p 6380 -- --tls
#
# Standalone server: FUNCTION LOAD REPLACE on it (its replicas receive the
# library by replication). Cluster (INFO cluster says cluster_enabled:1):
# the masters are read from CLUSTER NODES and the library is loaded into
# each of them (replicas again by replication); a master added later needs
# the same command. REPLACE makes it safe to run again after an upgrade of
# the file. Options after `--` go to every redis-cli call (auth, TLS, ...).
# REDIS_CLI names the client binary (default: redis-cli, else valkey-cli).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
PORT=6379
FILE="$REPO/functions/shield.lua"
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h) HOST="$2"; shift 2 ;;
        -p) PORT="$2"; shift 2 ;;
        --file) FILE="$2"; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        --help)
            sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        *) echo "load-functions: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

CLI="${REDIS_CLI:-}"
if [ -z "$CLI" ]; then
    CLI="$(command -v redis-cli || command -v valkey-cli || true)"
fi
[ -n "$CLI" ] || { echo "load-functions: no redis-cli or valkey-cli (set REDIS_CLI)" >&2; exit 1; }
[ -f "$FILE" ] || { echo "load-functions: no library at $FILE" >&2; exit 1; }
SOURCE="$(cat "$FILE")"

cli() { # cli <host> <port> <args...>
    local h="$1" p="$2"
    shift 2
    "$CLI" -h "$h" -p "$p" "${EXTRA[@]}" "$@"
}

load() { # load <host> <port>
    local out
    out="$(cli "$1" "$2" FUNCTION LOAD REPLACE "$SOURCE" 2>&1)"
    if [ "$out" != "shield" ]; then
        echo "load-functions: $1:$2 answered: $out" >&2
        return 1
    fi
    echo "loaded library 'shield' on $1:$2"
}

if cli "$HOST" "$PORT" INFO cluster | tr -d '\r' | grep -qx 'cluster_enabled:1'; then
    # <id> <ip:port@cport[,hostname]> <flags> <master> ... : masters not failing.
    masters="$(cli "$HOST" "$PORT" CLUSTER NODES | tr -d '\r' | awk '
        $3 ~ /(^|,)master(,|$)/ && $3 !~ /fail/ && $3 !~ /noaddr/ {
            addr = $2; sub(/@.*/, "", addr); print addr
        }')"
    [ -n "$masters" ] || { echo "load-functions: CLUSTER NODES lists no master" >&2; exit 1; }
    status=0
    for addr in $masters; do
        h="${addr%:*}"
        p="${addr##*:}"
        # A node that announces no address ("":port, ":0") is reached where we asked.
        if [ -z "$h" ]; then h="$HOST"; fi
        load "$h" "$p" || status=1
    done
    exit "$status"
fi
load "$HOST" "$PORT"
