#!/usr/bin/env bash
# What instruction counts hide, per request: cache misses, allocations,
# dictionary lookups and key hashes, counted by valgrind's callgrind with its
# cache simulator over everything the server does while the requests run
# (reading, parsing, executing, propagating, replying; not its startup or
# the preload), for each command given.
#
#   scripts/cache-per-call.sh [-n REQUESTS] [-r KEYS] [-P PIPELINE] -- CMD ARGS... [-- CMD ARGS...]...
#
# For each command: starts a fresh server under callgrind with instrumentation
# off; with -r, first runs the command once on each of the KEYS keys
# key:000000000000 .. (redis-benchmark's __rand_int__ keys, so the measured
# run finds them in the state it keeps: steady state, cold in the cache);
# then counts REQUESTS requests (redis-benchmark, 1 client, -P PIPELINE,
# -r KEYS if given) and prints, per request:
#   Ir      instructions
#   I1mr    L1 instruction-cache misses
#   D1mr    L1 data-cache read misses
#   LLdmr   last-level data-cache read misses (the ones that go to memory)
#   allocs  zmalloc/ztrymalloc/zcalloc/zrealloc calls (the server's allocator)
#   lookups dictionary lookups (dictFind*/dictFetchValue/dictTwoPhaseUnlinkFind calls)
#   hashes  key hashes (siphash calls; command-name hashes are siphash_nocase)
# The cache is callgrind's model (first level as on this CPU, last level as
# its L3), not a hardware counter: it compares two commands, it does not
# predict a time. Server: $SHIELD_SERVER_BIN or redis-server on PATH (e.g.
# the build with the native GCRA, ~/.cache/redis-shield-anchors/redis-gcra/
# redis-server, to run SHIELD.absorb beside GCRA); module: $SHIELD_MODULE or
# this tree's release build; SHIELD_CG_KEEP=DIR keeps each callgrind output
# there (for callgrind_annotate). Needs valgrind, redis-benchmark, redis-cli
# and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=50000
keys=0
pipeline=16
usage() { echo "usage: $0 [-n N] [-r KEYS] [-P P] -- CMD ARGS... [-- CMD ARGS...]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        -n) n="$2"; shift 2 ;;
        -r) keys="$2"; shift 2 ;;
        -P) pipeline="$2"; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
[ $# -gt 0 ] || usage
# shellcheck source=scripts/callgrind-common.sh
. scripts/callgrind-common.sh
need_tools valgrind callgrind_control redis-benchmark redis-cli python3
pick_server_and_module
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The preload: the command once on every key, as RESP for redis-cli --pipe.
preload() {
    python3 - "$keys" "$@" <<'EOF'
import sys
count, args = int(sys.argv[1]), sys.argv[2:]
out = []
for i in range(count):
    parts = [a.replace("__rand_int__", "%012d" % i).encode() for a in args]
    out.append(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
sys.stdout.buffer.write(b"".join(out))
EOF
}

# Per-request figures from one callgrind output file.
report() {
    python3 - "$1" "$n" "$2" <<'EOF'
import re, sys
path, n, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names, calls, totals, events, cfn = {}, {}, None, None, None
for line in open(path, errors="replace"):
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith("totals:"):
        totals = [int(x) for x in line.split()[1:]]
    elif line.startswith(("fn=", "cfn=")):
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line.strip())
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == "cfn":
                cfn = ident
    elif line.startswith("calls="):
        name = names.get(cfn, cfn)
        calls[name] = calls.get(name, 0) + int(line.split()[0][6:])
ev = dict(zip(events, totals))
def count(pattern):
    return sum(v for k, v in calls.items() if re.search(pattern, k)) / n
print("%9.0f %7.1f %7.1f %7.2f %7.1f %8.1f %7.1f  %s" % (
    ev["Ir"] / n, ev["I1mr"] / n, ev["D1mr"] / n, ev["DLmr"] / n,
    count(r"^(zmalloc|ztrymalloc|zcalloc|zrealloc)"),
    count(r"^(dictFind|dictFetchValue|dictTwoPhaseUnlinkFind)"),
    count(r"^siphash$"), label))
EOF
}

printf '%9s %7s %7s %7s %7s %8s %7s  %s\n' Ir I1mr D1mr LLdmr allocs lookups hashes command
while [ $# -gt 0 ]; do
    args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    port=$(free_port)
    out="$work/cg.out"
    valgrind --tool=callgrind --cache-sim=yes --instr-atstart=no \
        --callgrind-out-file="$out" "$server" --port "$port" --bind 127.0.0.1 --save "" \
        --appendonly no --daemonize no --dir "$work" --loadmodule "$module" \
        >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    rand=()
    if [ "$keys" -gt 0 ]; then
        preload "${args[@]}" | redis-cli -p "$port" --pipe >/dev/null
        rand=(-r "$keys")
    fi
    callgrind_control -i on "$pid" >/dev/null 2>&1
    redis-benchmark -p "$port" -c 1 -n "$n" -P "$pipeline" "${rand[@]}" -q "${args[@]}" >/dev/null
    callgrind_control -i off "$pid" >/dev/null 2>&1
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
    pid=
    report "$out" "${args[*]}"
    if [ -n "${SHIELD_CG_KEEP:-}" ]; then
        mkdir -p "$SHIELD_CG_KEEP"
        cp "$out" "$SHIELD_CG_KEEP/$(echo "${args[0]}" | tr -c 'A-Za-z0-9.\n' _)-$(date +%s%N).cg"
    fi
done
