# Sourced by scripts/ir-per-call.sh and scripts/cache-per-call.sh (not run on
# its own): the tools they need, the server and module they measure, a
# scratch directory and free ports.
#
#   need_tools TOOL...   exits 1 naming the first missing tool
#   pick_server_and_module
#       server: $SHIELD_SERVER_BIN, or redis-server on PATH
#       module: $SHIELD_MODULE (another build, e.g. a copy of the previous
#               one for a before/after comparison), or this tree's release
#               build, built now
#   work                 a scratch directory (the caller removes it)
#   free_port            prints a free loopback port

need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "missing $tool (apt-get install valgrind redis-tools python3)" >&2
            exit 1
        }
    done
}

pick_server_and_module() {
    server="${SHIELD_SERVER_BIN:-$(command -v redis-server || true)}"
    [ -x "$server" ] || { echo "no redis-server: set SHIELD_SERVER_BIN or install one" >&2; exit 1; }
    if [ -n "${SHIELD_MODULE:-}" ]; then
        module="$SHIELD_MODULE"
    else
        cargo build --release --quiet
        module="$PWD/target/release/libredis_shield.so"
    fi
    work=$(mktemp -d)
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
