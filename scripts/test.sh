#!/usr/bin/env bash
# test.sh: run every test of Accord, installing and starting what the tests need.
#
#   scripts/test.sh                 # everything: a real Kafka broker is installed
#                                   # (jars from Maven Central), started on
#                                   # 127.0.0.1 and stopped at the end
#   ACCORD_KAFKA_BOOTSTRAP=host:port scripts/test.sh
#                                   # the same against an existing broker
#   scripts/test.sh -- engine::     # extra arguments go to the test binaries
#
# A second run reuses what the first fetched (cargo's registry, ~/.m2 and
# ~/.cache/accord). The Kafka tests fail, saying why, when no broker answers:
# they never skip.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test.sh: %s\n' "$*" >&2; }

for tool in cargo java mvn; do
    command -v "$tool" >/dev/null || { say "error: \`$tool\` is not installed; Accord's tests need Rust (cargo), Java 17+ and Maven"; exit 1; }
done

extra=()
if [[ "${1:-}" == "--" ]]; then
    shift
    extra=("$@")
fi

if [[ -z "${ACCORD_KAFKA_BOOTSTRAP:-}" ]]; then
    scripts/kafka.sh install >&2
    export ACCORD_KAFKA_DIR="${TMPDIR:-/tmp}/accord-kafka-test-$$"
    trap 'scripts/kafka.sh stop "$ACCORD_KAFKA_DIR" >&2 || true' EXIT
    line=$(scripts/kafka.sh start "$ACCORD_KAFKA_DIR" | tail -n 1)
    export ACCORD_KAFKA_BOOTSTRAP="${line#KAFKA_BOOTSTRAP=}"
    say "Kafka broker started at $ACCORD_KAFKA_BOOTSTRAP (run dir $ACCORD_KAFKA_DIR)"
else
    say "using the existing Kafka broker at $ACCORD_KAFKA_BOOTSTRAP"
fi

# librdkafka is built with CMake and Cyrus SASL (GSSAPI): Debian's cmake and
# libsasl2-dev (zstd and libcurl are built from their crates' sources).
if ! command -v cmake >/dev/null || ! dpkg -s libsasl2-dev >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        say "installing Debian's cmake and libsasl2-dev for librdkafka's build"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake libsasl2-dev >&2
    else
        say "error: building librdkafka needs Debian's \`cmake\` and \`libsasl2-dev\`; install them (apt-get install cmake libsasl2-dev) or run as root"
        exit 1
    fi
fi

# Confluent's own serializers and deserializers (Python confluent-kafka, from PyPI)
# for the Schema Registry wire-format tests, in a venv of their own. No Schema Registry
# server can be installed here (Karapace is not on PyPI; Apicurio's Maven artifacts are
# not a runnable server): the tests use confluent-kafka's in-process mock registry.
confluent_venv="${ACCORD_CACHE:-${HOME:-/tmp}/.cache/accord}/confluent-venv"
if ! "$confluent_venv/bin/python" -c 'import confluent_kafka, fastavro, jsonschema, grpc_tools' 2>/dev/null; then
    command -v python3 >/dev/null || { say "error: the Schema Registry format tests need python3 (with venv)"; exit 1; }
    say "installing confluent-kafka and grpcio-tools from PyPI into $confluent_venv"
    python3 -m venv "$confluent_venv"
    "$confluent_venv/bin/pip" install -q "confluent-kafka[avro,protobuf,json,schemaregistry]==2.16.1" "grpcio-tools==1.85.1" >&2
fi
export ACCORD_CONFLUENT_PYTHON="$confluent_venv/bin/python"

# Headless Chromium renders the HTML pages in the tests (Debian's package).
if ! command -v chromium >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        say "installing Debian's chromium for the HTML page tests"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    else
        say "error: the HTML page tests need Debian's \`chromium\`; install it (apt-get install chromium) or run as root"
        exit 1
    fi
fi

say "checking that the benchmarks build"
cargo check --locked --workspace --benches --quiet

say "checking the Helm chart (helm lint, helm template, kubernetes-validate; installs both into the cache once)"
scripts/check-helm.sh

say "running the tests"
cargo test --locked --workspace --lib --bins --tests -- "${extra[@]}"
