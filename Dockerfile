# Redis with redis-shield loaded. Docker (BuildKit, the default builder) and
# Podman/Buildah read this file.
#
#   docker build -t redis-shield .                       # module built from this checkout
#   docker run -d -p 6379:6379 redis-shield
#   redis-cli SHIELD.absorb user123 30 60 13
#
# Build arguments:
#   BASE_IMAGE  the image the module is added to (default: the official Redis
#               7.0.15 bookworm image). Debian 12 (glibc 2.36) based or newer:
#               the module is a glibc shared library.
#   MODULE      `source` (default): build it here in a Rust builder stage
#               (RUST_IMAGE, default rust:1-bookworm, plus clang/libclang from
#               Debian); `prebuilt`: take the host's
#               target/release/libredis_shield.so (run `cargo build --release`
#               first; the host must be glibc 2.36 or older than the base).
#   RUST_IMAGE  the builder image for MODULE=source.
#
# The module goes to /usr/local/lib/redis/modules/libredis_shield.so and the
# entrypoint (scripts/container-entrypoint.sh) loads it: `docker run IMAGE`,
# `docker run IMAGE --port 7000`, `docker run IMAGE redis-server ...` all
# start Redis with it, as the `redis` user when the base image has one.
ARG BASE_IMAGE=redis:7.0.15-bookworm
ARG RUST_IMAGE=rust:1-bookworm
ARG MODULE=source

# --- the module, built from this checkout ---------------------------------------
FROM ${RUST_IMAGE} AS module-source
# bindgen (redis-module's build) needs libclang.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace (Cargo.toml names its members and test/bench targets);
# .dockerignore leaves out .git and target/ (a host build is removed first).
COPY . .
RUN rm -rf target \
    && cargo build --release --locked -p redis-shield --lib \
    && mkdir -p /out \
    && cp target/release/libredis_shield.so /out/

# --- or the host's build ----------------------------------------------------------
FROM scratch AS module-prebuilt
LABEL redis-shield.stage=module-prebuilt
COPY target/release/libredis_shield.so /out/

# Only the chosen stage is built (BuildKit and Buildah skip unused stages).
# Podman 4.3 (Buildah 1.28, Debian 12) reads only a --build-arg here, not the
# default above: give --build-arg MODULE=source (or prebuilt) explicitly there.
FROM module-${MODULE} AS module

# --- the image --------------------------------------------------------------------
FROM ${BASE_IMAGE}
COPY --from=module /out/libredis_shield.so /usr/local/lib/redis/modules/libredis_shield.so
COPY scripts/container-entrypoint.sh /usr/local/bin/redis-shield-entrypoint
ENTRYPOINT ["redis-shield-entrypoint"]
CMD ["redis-server"]
EXPOSE 6379
