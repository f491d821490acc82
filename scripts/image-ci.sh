#!/usr/bin/env bash
# The image, for real: build the Dockerfile with Podman on the local base
# image, run it, check it, remove it. CI runs it (.ci/run); so can a person,
# as root on Debian 12:
#
#   bash scripts/image-ci.sh
#
# 1. scripts/podman-setup.sh and scripts/build-base-image.sh (cached);
# 2. cargo build --release --lib, then
#    podman build --build-arg BASE_IMAGE=$SHIELD_BASE_IMAGE --build-arg MODULE=prebuilt
#    (no registry is reachable here: neither the official Redis image nor the
#    Rust builder image can be pulled, so the base is the Debian-packaged one
#    and the module the host's build);
# 3. a container with no arguments: the module is loaded (MODULE LIST, via
#    podman exec), SHIELD.absorb answers 9 then 8, the server runs as `redis`;
# 4. a container given only options (`IMAGE --protected-mode no`), its port
#    published on 127.0.0.1: the same checks from the host's redis-cli;
# 5. docker-compose.cluster.yml on this image (SHIELD_REDIS_IMAGE): the
#    cluster comes up and module_is_loaded_on_every_node passes
#    (test-cluster.sh --podman; host ports 7001-7006 and 17001-17006 must be free);
# 6. always removes the containers and the image it built (the base stays).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/podman-env.sh
. "$REPO/scripts/podman-env.sh"

IMAGE="${SHIELD_CI_IMAGE:-localhost/redis-shield:ci}"
C1=redis-shield-ci-default
C2=redis-shield-ci-port
TIMEOUT=30

log() { printf '[image-ci] %s\n' "$*"; }
die() {
    printf '[image-ci] ERROR: %s\n' "$*" >&2
    exit 1
}
timed() { # timed <name> <command...>
    local name="$1" start=$SECONDS
    shift
    log "$name"
    "$@"
    log "$name: ok in $((SECONDS - start))s"
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    log "removing containers $C1 $C2 and image $IMAGE"
    podman rm -f -t 2 "$C1" "$C2" >/dev/null 2>&1 || true
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
    # The module stage's image (labelled in the Dockerfile), left untagged by the build.
    local stage
    for stage in $(podman images -q --filter label=redis-shield.stage=module-prebuilt); do
        podman rmi -f "$stage" >/dev/null 2>&1 || true
    done
    return "$status"
}

# wait_for <what> <command...>: poll every 100 ms until it succeeds, or die.
wait_for() {
    local what="$1" deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
        sleep 0.1
    done
}
# shellcheck disable=SC2317 # called through wait_for
pong() { [ "$("$@" PING 2>/dev/null)" = PONG ]; }
# expect <what> <expected> <command...>: the command's output is exactly <expected>.
expect() {
    local what="$1" want="$2" got
    shift 2
    got="$("$@" 2>&1)" || die "$what: '$*' failed: $got"
    [ "$got" = "$want" ] || die "$what: expected '$want', got '$got'"
    log "  ok: $what = $got"
}
# check_node <name> <redis-cli command...>: module loaded, SHIELD.absorb answers.
check_node() {
    local name="$1"
    shift
    wait_for "$name to answer PING" pong "$@"
    local modules
    modules="$("$@" MODULE LIST)" || die "$name: MODULE LIST failed"
    grep -qx shield <<<"$modules" || die "$name: module shield not loaded: $modules"
    grep -qx /usr/local/lib/redis/modules/libredis_shield.so <<<"$modules" \
        || die "$name: module not loaded from the image's path: $modules"
    log "  ok: $name: MODULE LIST has shield (/usr/local/lib/redis/modules/libredis_shield.so)"
    expect "$name: SHIELD.absorb k 10 60" 9 "$@" SHIELD.absorb k 10 60
    expect "$name: SHIELD.absorb k 10 60 (again)" 8 "$@" SHIELD.absorb k 10 60
}

free_port() { # a free loopback port from 16379 up
    local p
    for ((p = 16379; p < 16479; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port in 16379-16478"
}

timed "podman setup" bash scripts/podman-setup.sh
timed "base image" bash scripts/build-base-image.sh
command -v redis-cli >/dev/null 2>&1 || die "redis-cli is needed on the host (apt-get install redis-tools)"

trap cleanup EXIT
trap 'exit 130' INT TERM
podman rm -f -t 2 "$C1" "$C2" >/dev/null 2>&1 || true # left by an interrupted run

# The same command as test-cluster.sh (step 5): another feature set (-p) would
# rebuild the module twice.
timed "cargo build --release --lib" cargo build --release --lib
timed "podman build ($IMAGE on $SHIELD_BASE_IMAGE, MODULE=prebuilt)" \
    podman build --file Dockerfile --tag "$IMAGE" \
    --build-arg BASE_IMAGE="$SHIELD_BASE_IMAGE" --build-arg MODULE=prebuilt .

start=$SECONDS
log "run $C1: podman run -d $IMAGE (no arguments)"
podman run -d --name "$C1" "$IMAGE" >/dev/null
check_node "$C1" podman exec "$C1" redis-cli
expect "$C1: user of the server (PID 1)" redis podman exec "$C1" stat -c %U /proc/1
expect "$C1: owner of /data" redis podman exec "$C1" stat -c %U /data
podman rm -f -t 2 "$C1" >/dev/null

port="$(free_port)"
log "run $C2: podman run -d -p 127.0.0.1:$port:6379 $IMAGE --protected-mode no"
podman run -d --name "$C2" -p "127.0.0.1:$port:6379" "$IMAGE" --protected-mode no >/dev/null
check_node "$C2 (from the host, port $port)" redis-cli -p "$port"
expect "$C2: user of the server (PID 1)" redis podman exec "$C2" stat -c %U /proc/1
podman rm -f -t 2 "$C2" >/dev/null
log "containers: ok in $((SECONDS - start))s"

timed "docker-compose.cluster.yml on $IMAGE" \
    env SHIELD_REDIS_IMAGE="$IMAGE" \
    SHIELD_PODMAN_COMPOSE="$SHIELD_PODMAN_COMPOSE_VENV/bin/podman-compose" \
    bash test-cluster.sh --podman -- --test cluster module_is_loaded_on_every_node
log "all checks passed"
