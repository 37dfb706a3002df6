# syntax=docker/dockerfile:1
#
# Accord's container image: a Rust build stage, then a slim Debian runtime.
#
#   docker build -t accord:0.1.0 .
#   docker run --rm accord:0.1.0 demo --output /tmp/out      # the built-in example site
#
# The image runs as the non-root user `accord` (UID and GID 10001) and writes
# nothing outside /tmp, so it runs with a read-only root filesystem; the Helm chart
# under helm/accord mounts an emptyDir on /tmp and sets readOnlyRootFilesystem.
# Kafka mode: `accord run --config /etc/accord/gateway.yaml` (the chart's default).
#
# Not built on the machine this was written on (it has no Docker engine): the
# build stage runs the same `cargo build --release --locked` as the tests do.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------- build ----
FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build

# rdkafka builds its bundled librdkafka with CMake (`cmake-build`: its ./configure
# build cannot link the static libcurl that `curl-static` builds): a C toolchain,
# cmake, perl and pkg-config. The `ssl` feature links the system OpenSSL
# (libssl-dev), gzip links zlib (zlib1g-dev), `gssapi` links Cyrus SASL
# (libsasl2-dev); zstd (zstd-sys) and libcurl (curl-sys, for OIDC) are built from
# their crates' sources and linked statically; snappy and lz4 are librdkafka's own.
# protoc is not needed: gateway/core/build.rs compiles schemas/ with protox.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential make cmake perl pkg-config libssl-dev zlib1g-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Everything Cargo.toml names (the library, the binary, the test and bench
# targets), the protobuf schemas build.rs compiles, and the examples that
# `accord demo` embeds. .dockerignore keeps target/ and the rest out.
COPY Cargo.toml Cargo.lock ./
COPY schemas ./schemas
COPY gateway ./gateway
COPY examples ./examples
COPY tests ./tests
COPY benches ./benches

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin accord \
 && install -D -m 0755 target/release/accord /out/accord

# -------------------------------------------------------------- runtime ----
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime

# libssl3 and zlib1g for librdkafka (TLS, gzip); libsasl2-2 and the Cyrus GSSAPI
# plugin (libsasl2-modules-gssapi-mit) for `sasl.mechanism: GSSAPI` (Kerberos);
# ca-certificates so that `security.protocol: ssl` / `sasl_ssl` verify public CAs
# (and OIDC token endpoints) without extra mounts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g libsasl2-2 libsasl2-modules-gssapi-mit \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 accord \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin accord \
 && mkdir -p /etc/accord \
 && chown root:root /etc/accord && chmod 0755 /etc/accord

COPY --from=build /out/accord /usr/local/bin/accord

LABEL org.opencontainers.image.title="accord" \
      org.opencontainers.image.description="Streaming gateway that holds workplace sensor data to a works-council agreement" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 10001:10001
WORKDIR /tmp
# The admin server (metrics, /healthz, /readyz) listens here by the chart's config.
EXPOSE 9464
# SIGTERM drains in-flight deliveries, commits and exits 0 (limits.drain_timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["accord"]
CMD ["run", "--config", "/etc/accord/gateway.yaml"]
