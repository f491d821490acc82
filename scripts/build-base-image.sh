#!/usr/bin/env bash
# Build the local base image $SHIELD_BASE_IMAGE (default
# localhost/redis-shield-base:bookworm) from Debian's own packages, for
# machines that cannot pull from a container registry:
#
#   bash scripts/build-base-image.sh [--rebuild]
#
#   mmdebstrap --variant=essential --include=redis-server bookworm rootfs.tar
#   podman import --change 'WORKDIR /data' --change 'CMD ["redis-server"]' rootfs.tar IMAGE
#
# Debian 12 with redis-server and redis-cli 7.0.15 (Debian's build: protected
# mode on, unlike the official image), a `redis` user, WORKDIR /data. About
# 30 s with a warm apt mirror, 120-160 MB. Skipped when the image exists
# already (--rebuild to build it again). Needs root and
# scripts/podman-setup.sh (podman, mmdebstrap).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/podman-env.sh
. "$REPO/scripts/podman-env.sh"

log() { printf '[build-base-image] %s\n' "$*"; }
die() {
    printf '[build-base-image] ERROR: %s\n' "$*" >&2
    exit 1
}

REBUILD=0
case "${1:-}" in
    "") ;;
    --rebuild) REBUILD=1 ;;
    *) die "unknown argument: $1 (usage: $0 [--rebuild])" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run it as root (mmdebstrap, rootful Podman)"
if ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1; then
    die "podman and mmdebstrap are needed: bash scripts/podman-setup.sh"
fi

IMAGE="$SHIELD_BASE_IMAGE"
if [ "$REBUILD" -eq 0 ] && podman image exists "$IMAGE"; then
    log "$IMAGE exists: kept (--rebuild to build it again)"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS
log "mmdebstrap: Debian bookworm + redis-server (from Debian's mirror)"
# Documentation, manual pages and translations are left out of the image.
mmdebstrap --variant=essential --include=redis-server \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$TMP/rootfs.tar" </dev/null
log "podman import -> $IMAGE"
podman import --change 'WORKDIR /data' --change 'CMD ["redis-server"]' \
    --message "Debian bookworm + redis-server, built by redis-shield scripts/build-base-image.sh" \
    "$TMP/rootfs.tar" "$IMAGE" </dev/null >/dev/null
version="$(podman run --rm "$IMAGE" redis-server --version)" \
    || die "the new image does not run redis-server"
log "$IMAGE: $version ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes) in $((SECONDS - start))s"
