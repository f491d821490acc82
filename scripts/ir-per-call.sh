#!/usr/bin/env bash
# Instructions executed by the server per request, measured with valgrind's
# callgrind (instruction counts do not depend on machine load, so this is the
# stable way to compare two commands or two builds on a noisy machine).
#
#   scripts/ir-per-call.sh [-n REQUESTS] [-P PIPELINE] [-c CLIENTS] [-t FUNCTION] [-L] -- CMD ARGS... [-- CMD ARGS...]...
#
# For each command: starts a fresh server under callgrind with the release
# module, runs REQUESTS requests with redis-benchmark (-c CLIENTS, default 4;
# -c 1 makes the server's event-loop batches, and so the count, repeatable to
# a few instructions; -P PIPELINE), and
# reports (Ir(run) - Ir(idle run)) / REQUESTS, where the idle run is a server
# that only answers one PING: startup and shutdown cancel out. -t FUNCTION counts
# only inside that server function (callgrind --toggle-collect), e.g.
# `-t processCommand`: the command's execution from lookup to propagation,
# without the event loop and the server's timers, whose share grows with the
# run's wall time and so with the machine's load (the figure to compare two
# builds of the module on a busy machine). -L loads the Functions library
# (functions/shield.lua) and the benchmark's Lua token bucket
# (benches/shield_bench/token_bucket.lua, SCRIPT LOAD; its SHA1 is printed)
# into each server first, to count `FCALL shield_absorb 1 KEY ...` and
# `EVALSHA <sha> 1 KEY ...`.
# Server binary: $SHIELD_SERVER_BIN or redis-server on PATH; module: $SHIELD_MODULE or
# this tree's release build; SHIELD_SERVER_ARGS: more server options (e.g.
# "--maxmemory 1gb --maxmemory-policy allkeys-lru"). Needs valgrind,
# redis-benchmark and redis-cli.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=100000
pipeline=16
clients=4
toggle=()
scripts=0
while [ $# -gt 0 ]; do
    case "$1" in
        -n) n="$2"; shift 2 ;;
        -P) pipeline="$2"; shift 2 ;;
        -c) clients="$2"; shift 2 ;;
        -t) toggle=("--toggle-collect=$2"); shift 2 ;;
        -L) scripts=1; shift ;;
        --) shift; break ;;
        *) echo "usage: $0 [-n N] [-P P] [-c C] [-t F] [-L] -- CMD ARGS... [-- CMD ARGS...]" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: $0 [-n N] [-P P] [-c C] [-t F] [-L] -- CMD ARGS... [-- CMD ARGS...]" >&2; exit 2; }
# shellcheck source=scripts/callgrind-common.sh
. scripts/callgrind-common.sh
need_tools valgrind redis-benchmark redis-cli python3
pick_server_and_module
trap 'rm -rf "$work"' EXIT


# ir <label> [cmd args...]: total Ir of a server run that serves the command
ir() {
    local label="$1"; shift
    local port out pid
    port=$(free_port)
    out="$work/$label.cg"
    valgrind --tool=callgrind "${toggle[@]}" --callgrind-out-file="$out" "$server" --port "$port" \
        --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$work" \
        --loadmodule "$module" ${SHIELD_SERVER_ARGS:-} >"$work/$label.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    if [ "$scripts" = 1 ]; then
        redis-cli -p "$port" FUNCTION LOAD REPLACE "$(cat functions/shield.lua)" >/dev/null
        redis-cli -p "$port" SCRIPT LOAD "$(cat benches/shield_bench/token_bucket.lua)" >/dev/null
    fi
    if [ $# -gt 0 ]; then
        redis-benchmark -p "$port" -c "$clients" -n "$n" -P "$pipeline" -q "$@" >/dev/null
    fi
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
    grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
}

if [ "$scripts" = 1 ]; then
    echo "Lua token bucket: EVALSHA $(printf '%s' "$(cat benches/shield_bench/token_bucket.lua)" | sha1sum | cut -d' ' -f1)"
fi
idle=$(ir idle)
i=0
while [ $# -gt 0 ]; do
    args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    i=$((i + 1))
    total=$(ir "cmd$i" "${args[@]}")
    printf '%8d Ir/request  %s\n' $(( (total - idle) / n )) "${args[*]}"
done
