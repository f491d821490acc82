# shellcheck shell=bash
# Sourced by the Podman scripts (podman-setup.sh, build-base-image.sh,
# compose-cluster-ci.sh, image-ci.sh): the names they share. Each can be
# overridden from the environment.

# The base image built locally from Debian's packages (build-base-image.sh):
# Debian 12 with redis-server/redis-cli 7.0.15, WORKDIR /data, CMD redis-server.
SHIELD_BASE_IMAGE="${SHIELD_BASE_IMAGE:-localhost/redis-shield-base:bookworm}"
# The virtualenv that holds podman-compose (PyPI), and its version.
SHIELD_PODMAN_COMPOSE_VENV="${SHIELD_PODMAN_COMPOSE_VENV:-/var/cache/redis-shield/podman-compose}"
SHIELD_PODMAN_COMPOSE_VERSION="${SHIELD_PODMAN_COMPOSE_VERSION:-1.6.0}"
export SHIELD_BASE_IMAGE SHIELD_PODMAN_COMPOSE_VENV SHIELD_PODMAN_COMPOSE_VERSION
