#!/usr/bin/env bash
# The compose cluster, for real: docker-compose.cluster.yml (unmodified) run by
# Podman, and the cluster suite against it. CI runs it (.ci/run); so can a
# person, as root on Debian 12:
#
#   bash scripts/compose-cluster-ci.sh [-- <cargo test args>]   # default: -- --test cluster
#
# 0. scripts/install-servers.sh (redis-server, redis-cli, libclang) and PyYAML;
# 1. scripts/podman-setup.sh: podman, runc, mmdebstrap, containers.conf,
#    podman-compose (virtualenv);
# 2. scripts/build-base-image.sh: the Debian-packaged Redis 7.0.15 base image
#    (no registry is reachable here), unless it exists already;
# 3. test-cluster.sh --podman with SHIELD_REDIS_IMAGE set to that image:
#    builds the release module, `podman-compose -f docker-compose.cluster.yml
#    up -d` (6 nodes on host ports 7001-7006 + 17001-17006, which must be
#    free, and the cluster-create service), waits for cluster_state:ok and
#    replicas in sync, checks MODULE LIST on every node, runs
#    `cargo test --features cluster-tests --test cluster` with
#    REDIS_CLUSTER_URLS naming the six nodes, and always brings the cluster
#    down (`podman-compose ... down -v`), also when a test fails.
#
# With Docker instead: ./test-cluster.sh --docker (see CLUSTER.md).
# Exits non-zero when any step fails; nothing is skipped.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/podman-env.sh
. "$REPO/scripts/podman-env.sh"

CARGO_ARGS=(--test cluster)
if [ "${1:-}" = -- ]; then
    shift
    CARGO_ARGS=("$@")
elif [ "$#" -gt 0 ]; then
    echo "usage: $0 [-- <cargo test args>]" >&2
    exit 2
fi

timed() { # timed <name> <command...>
    local name="$1" start=$SECONDS
    shift
    echo "[compose-cluster-ci] $name"
    "$@"
    echo "[compose-cluster-ci] $name: ok in $((SECONDS - start))s"
}

# Redis (redis-server, redis-cli) and libclang on the host: the cluster suite's
# two destructive tests start their own local cluster, and redis-cli checks the
# containers. PyYAML: the suite parses docker-compose.cluster.yml.
timed "test servers" bash scripts/install-servers.sh
if ! python3 -c 'import yaml' 2>/dev/null; then
    timed "pyyaml" python3 -m pip install --quiet pyyaml </dev/null
fi
timed "podman setup" bash scripts/podman-setup.sh
timed "base image" bash scripts/build-base-image.sh
# test-cluster.sh --podman tears the cluster down on exit (its EXIT trap).
timed "compose cluster + cluster suite" \
    env SHIELD_REDIS_IMAGE="$SHIELD_BASE_IMAGE" \
    SHIELD_PODMAN_COMPOSE="$SHIELD_PODMAN_COMPOSE_VENV/bin/podman-compose" \
    bash test-cluster.sh --podman -- "${CARGO_ARGS[@]}"

# Nothing of the cluster may be left behind.
left="$(podman ps -a --filter "label=com.docker.compose.project.working_dir=$REPO" --format '{{.Names}}')"
if [ -n "$left" ]; then
    echo "[compose-cluster-ci] ERROR: containers left after the teardown: $left" >&2
    exit 1
fi
