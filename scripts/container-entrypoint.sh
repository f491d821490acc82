#!/bin/sh
# Entrypoint of the redis-shield image (see Dockerfile): Redis with the module
# loaded, as the image's `redis` user when there is one.
#
#   docker run IMAGE                       -> redis-server --loadmodule <module>
#   docker run IMAGE --port 7000           -> redis-server --port 7000 --loadmodule <module>
#   docker run IMAGE /etc/my-redis.conf    -> redis-server /etc/my-redis.conf --loadmodule <module>
#   docker run IMAGE redis-server ARGS...  -> the same, ARGS kept
#   docker run IMAGE redis-cli ...         -> runs as given (any other command too)
#
# The module is not added when the command line already names
# libredis_shield.so (docker-compose.cluster.yml mounts and loads the host's
# build), or when SHIELD_AUTOLOAD=no (e.g. a config file with its own
# `loadmodule` line: loading it twice fails).
#
# Started as root and the image has a `redis` user (the official Redis images
# and Debian's redis-server package both make one): the working directory
# (/data) is handed to that user and the server runs as it, like the official
# image's own entrypoint does. Started as another user (`--user`): runs as is.
set -eu

MODULE="${SHIELD_MODULE_PATH:-/usr/local/lib/redis/modules/libredis_shield.so}"

# Arguments for redis-server only (an option, or a config file).
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

case "$1" in
    redis-server | */redis-server | valkey-server | */valkey-server)
        case " $* " in
            *libredis_shield*) ;;
            *)
                if [ "${SHIELD_AUTOLOAD:-yes}" != no ]; then
                    set -- "$@" --loadmodule "$MODULE"
                fi
                ;;
        esac
        if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
            if [ "$PWD" != / ]; then
                find . \! -user redis -exec chown redis '{}' +
            fi
            # The official image's choice: data files readable by the server only.
            if [ "$(umask)" = 0022 ]; then umask 0077; fi
            if command -v setpriv >/dev/null 2>&1; then
                exec setpriv --reuid=redis --regid=redis --init-groups "$@"
            elif command -v gosu >/dev/null 2>&1; then
                exec gosu redis "$@"
            fi
            echo "redis-shield-entrypoint: neither setpriv nor gosu found: running as root" >&2
        fi
        ;;
esac
exec "$@"
