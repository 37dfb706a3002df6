#!/usr/bin/env bash
# kafka.sh: fetch, run and stop a real single-node Apache Kafka 4.x broker
# (KRaft combined broker+controller mode, plaintext, 127.0.0.1 only) for
# Accord's tests.
#
# The broker's jars come from Maven Central through Maven (scripts/kafka-pom.xml),
# since no Kafka release tarball can be downloaded here.  See scripts/README.md.
#
# Usage:
#   kafka.sh install                    fetch the jars into the cache (idempotent)
#   kafka.sh start [DIR]                format DIR and start a broker; last stdout
#                                       line is KAFKA_BOOTSTRAP=127.0.0.1:PORT
#   kafka.sh stop [DIR]                 stop the broker and delete DIR
#   kafka.sh status [DIR]               exit 0 and print KAFKA_BOOTSTRAP=... if running
#   kafka.sh bootstrap [DIR]            print the bootstrap address (host:port)
#   kafka.sh restart-broker [DIR]       stop the process, start it again on the
#                                       same ports and data
#   kafka.sh stop-broker [DIR]          stop the process only (keeps ports/data)
#   kafka.sh start-broker [DIR]         start a stopped broker again
#   kafka.sh topics [DIR] ARGS...       org.apache.kafka.tools.TopicCommand
#                                       --bootstrap-server <DIR's broker> ARGS...
#   kafka.sh tool CLASS ARGS...         run any java main class from the Kafka jars
#   kafka.sh logs [DIR]                 print the tail of the broker log
#
# DIR defaults to $ACCORD_KAFKA_DIR or /tmp/accord-kafka.

set -euo pipefail

readonly KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
readonly CACHE_ROOT="${ACCORD_CACHE:-${HOME:-/tmp}/.cache/accord}"
readonly KAFKA_HOME_DIR="${CACHE_ROOT}/kafka-${KAFKA_VERSION}"
readonly LIBS_DIR="${KAFKA_HOME_DIR}/libs"
readonly CONF_DIR="${KAFKA_HOME_DIR}/config"
readonly INSTALL_MARKER="${KAFKA_HOME_DIR}/.installed"
readonly DEFAULT_RUN_DIR="${ACCORD_KAFKA_DIR:-/tmp/accord-kafka}"
readonly START_TIMEOUT="${ACCORD_KAFKA_START_TIMEOUT:-90}"
readonly BROKER_HEAP_OPTS="${ACCORD_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
readonly TOOL_HEAP_OPTS="-Xms32m -Xmx256m"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly POM="${SCRIPT_DIR}/kafka-pom.xml"

# Bumped whenever the install layout written below changes, so that an old
# cache is refreshed rather than half-reused.
readonly INSTALL_LAYOUT=1

# Main classes (Kafka 4.1).
readonly BROKER_MAIN="kafka.Kafka"
readonly STORAGE_MAIN="kafka.tools.StorageTool"
readonly TOPIC_MAIN="org.apache.kafka.tools.TopicCommand"

# Marker that says a run directory was created by this script (and so may be
# wiped by it).
readonly RUN_MARKER=".accord-kafka"

if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
    JAVA="${JAVA_HOME}/bin/java"
else
    JAVA="java"
fi
readonly JAVA

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '/^# Usage:/,/^# DIR defaults/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

# ---------------------------------------------------------------- install --

require_java() {
    command -v "$JAVA" >/dev/null 2>&1 \
        || die "java not found (need Java 17+; set JAVA_HOME or put java on PATH)"
    local ver major
    ver="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
    major="${ver%%.*}"
    if [[ "$major" == "1" ]]; then
        major="$(printf '%s' "$ver" | cut -d. -f2)"
    fi
    [[ "$major" =~ ^[0-9]+$ ]] || die "cannot parse the Java version from '$JAVA -version'"
    ((major >= 17)) || die "Kafka ${KAFKA_VERSION} needs Java 17+, but $JAVA is version $ver"
}

pom_hash() {
    sha256sum "$POM" | cut -d' ' -f1
}

expected_marker() {
    printf 'version=%s layout=%s pom=%s\n' "$KAFKA_VERSION" "$INSTALL_LAYOUT" "$(pom_hash)"
}

is_installed() {
    [[ -f "$INSTALL_MARKER" && -d "$LIBS_DIR" ]] || return 1
    [[ "$(cat "$INSTALL_MARKER")" == "$(expected_marker)" ]] || return 1
    [[ -f "${LIBS_DIR}/kafka_2.13-${KAFKA_VERSION}.jar" \
        && -f "${LIBS_DIR}/kafka-tools-${KAFKA_VERSION}.jar" ]]
}

write_tools_log_config() {
    # Command-line tools: warnings and errors only, on stderr.
    cat >"$1" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

do_install() {
    require_java
    [[ -f "$POM" ]] || die "missing $POM"
    if is_installed; then
        log "Kafka ${KAFKA_VERSION} already installed in ${KAFKA_HOME_DIR}"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install maven)"
    mkdir -p "$KAFKA_HOME_DIR"

    # Serialise concurrent installs of the same version.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"${KAFKA_HOME_DIR}/.install.lock"
        flock 9
        if is_installed; then
            log "Kafka ${KAFKA_VERSION} installed by a concurrent run"
            exec 9>&-
            return 0
        fi
    fi

    log "installing Kafka ${KAFKA_VERSION} into ${KAFKA_HOME_DIR} (Maven Central)"
    local work
    work="$(mktemp -d "${KAFKA_HOME_DIR}/.install.XXXXXX")"
    cp "$POM" "${work}/pom.xml"
    if ! (cd "$work" && mvn -B -q -f pom.xml \
            -Dkafka.version="$KAFKA_VERSION" \
            -DincludeScope=runtime \
            -DoutputDirectory="${work}/libs" \
            dependency:copy-dependencies) >"${work}/mvn.log" 2>&1; then
        tail -n 40 "${work}/mvn.log" >&2 || true
        rm -rf "$work"
        die "mvn failed to fetch org.apache.kafka:kafka_2.13:${KAFKA_VERSION} (output above)"
    fi
    local jar
    for jar in "kafka_2.13-${KAFKA_VERSION}.jar" "kafka-tools-${KAFKA_VERSION}.jar" \
               "kafka-clients-${KAFKA_VERSION}.jar"; do
        [[ -f "${work}/libs/${jar}" ]] || { rm -rf "$work"; die "mvn did not produce ${jar}"; }
    done
    compgen -G "${work}/libs/log4j-slf4j*-impl-*.jar" >/dev/null \
        || { rm -rf "$work"; die "mvn did not produce the log4j slf4j binding"; }

    rm -f "$INSTALL_MARKER"
    rm -rf "$LIBS_DIR" "$CONF_DIR"
    mv "${work}/libs" "$LIBS_DIR"
    mkdir -p "$CONF_DIR"
    write_tools_log_config "${CONF_DIR}/tools-log4j2.properties"
    rm -rf "$work"
    expected_marker >"$INSTALL_MARKER"
    log "installed $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1))"
    if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
}

ensure_installed() {
    is_installed || do_install
}

# ------------------------------------------------------------------- java --

# run_tool CLASS ARGS...: run a Kafka main class in the foreground.
run_tool() {
    local main="$1"
    shift
    ensure_installed
    # shellcheck disable=SC2086 # TOOL_HEAP_OPTS is a list of flags
    "$JAVA" $TOOL_HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="${CONF_DIR}/tools-log4j2.properties" \
        -cp "${LIBS_DIR}/*" "$main" "$@"
}

# ------------------------------------------------------------------- runs --

resolve_dir() {
    local d="${1:-$DEFAULT_RUN_DIR}"
    [[ -n "$d" ]] || die "empty run directory"
    case "$d" in
        /*) ;;
        *) d="$PWD/$d" ;;
    esac
    printf '%s\n' "${d%/}"
}

broker_pid() {
    # Prints the pid of the live broker started from $1, or fails.
    local dir="$1" pid
    [[ -f "${dir}/kafka.pid" ]] || return 1
    pid="$(cat "${dir}/kafka.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: it must be our java process.
    if [[ -r "/proc/${pid}/cmdline" ]]; then
        tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q -- "$BROKER_MAIN" || return 1
    fi
    printf '%s\n' "$pid"
}

port_in_use() {
    # True if something accepts connections on 127.0.0.1:$1.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    # A random free port below the Linux ephemeral range (32768+), so that it
    # does not collide with outgoing connections; $1 = a port to avoid.
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        [[ "$p" == "${1:-}" ]] && continue
        if command -v ss >/dev/null 2>&1; then
            ss -Htan "sport = :$p" 2>/dev/null | grep -q . && continue
        fi
        port_in_use "$p" && continue
        printf '%s\n' "$p"
        return 0
    done
    die "could not find a free TCP port on 127.0.0.1"
}

random_cluster_id() {
    # A Kafka Uuid: 16 random bytes, base64url without padding (22 chars);
    # like Uuid.randomUuid(), avoid ids that start with '-'.
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* && ${#id} -eq 22 ]] && break
    done
    printf '%s\n' "$id"
}

write_server_properties() {
    local dir="$1" port="$2" cport="$3"
    cat >"${dir}/server.properties" <<EOF
# Written by scripts/kafka.sh: single-node KRaft (combined mode) test broker.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${cport}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${dir}/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
# After a SIGKILL the restarted broker must wait for its old registration's
# session to expire (default 9s); keep that short for restart tests.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=500
log.retention.hours=24
EOF
    if [[ -n "${ACCORD_KAFKA_PROPS:-}" ]]; then
        printf '# From ACCORD_KAFKA_PROPS:\n%s\n' "$ACCORD_KAFKA_PROPS" >>"${dir}/server.properties"
    fi
}

write_broker_log_config() {
    # Broker logs go to DIR/logs/server.log only (nothing on the console).
    cat >"${1}/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${1}/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${ACCORD_KAFKA_LOG_LEVEL:-INFO}
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
# The full config dumps ("KafkaConfig values: ...") of every client and server.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

show_log_tail() {
    local dir="$1" f
    for f in "${dir}/logs/kafka.out" "${dir}/logs/server.log"; do
        if [[ -s "$f" ]]; then
            printf -- '----- last lines of %s -----\n' "$f" >&2
            tail -n "${2:-40}" "$f" >&2
        fi
    done
}

launch_broker() {
    local dir="$1" pid
    mkdir -p "${dir}/logs"
    # setsid: the broker outlives the caller's process group (e.g. a test
    # harness that kills its children); stdio must not hold the caller's pipes.
    # shellcheck disable=SC2086 # BROKER_HEAP_OPTS is a list of flags
    setsid "$JAVA" $BROKER_HEAP_OPTS ${ACCORD_KAFKA_JVM_OPTS:-} \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="${dir}/log4j2.properties" \
        -Dkafka.logs.dir="${dir}/logs" \
        -cp "${LIBS_DIR}/*" "$BROKER_MAIN" "${dir}/server.properties" \
        </dev/null >>"${dir}/logs/kafka.out" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"${dir}/kafka.pid"
}

wait_ready() {
    local dir="$1" bootstrap pid deadline
    bootstrap="$(cat "${dir}/bootstrap")"
    pid="$(cat "${dir}/kafka.pid")"
    deadline=$((SECONDS + START_TIMEOUT))
    local port="${bootstrap##*:}"
    # 1. The process is alive and the client port accepts connections.
    while ! port_in_use "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$dir"
            die "broker (pid $pid) exited during startup"
        fi
        ((SECONDS < deadline)) || {
            show_log_tail "$dir"
            die "broker did not open ${bootstrap} within ${START_TIMEOUT}s"
        }
        sleep 0.2
    done
    # 2. It answers a real metadata request (listing topics via the Admin API).
    local out left
    while :; do
        left=$((deadline - SECONDS))
        ((left > 0)) || break
        ((left > 30)) && left=30
        # shellcheck disable=SC2086 # TOOL_HEAP_OPTS is a list of flags
        if out="$(timeout "$left" "$JAVA" $TOOL_HEAP_OPTS -XX:+UseSerialGC \
                -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
                -Dlog4j2.configurationFile="${CONF_DIR}/tools-log4j2.properties" \
                -cp "${LIBS_DIR}/*" "$TOPIC_MAIN" --bootstrap-server "$bootstrap" \
                --list 2>&1)"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$dir"
            die "broker (pid $pid) exited during startup"
        fi
        sleep 0.5
    done
    printf '%s\n' "$out" | tail -n 10 >&2
    show_log_tail "$dir"
    die "broker at ${bootstrap} did not answer a metadata request within ${START_TIMEOUT}s"
}

stop_process() {
    # SIGTERM, wait up to 30s for a clean shutdown, then SIGKILL.
    local dir="$1" pid i
    if ! pid="$(broker_pid "$dir")"; then
        rm -f "${dir}/kafka.pid"
        return 0
    fi
    log "stopping broker pid ${pid}"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "broker pid ${pid} still alive after 30s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "${dir}/kafka.pid"
}

check_run_dir() {
    [[ -f "${1}/${RUN_MARKER}" && -f "${1}/server.properties" ]] \
        || die "${1} is not a run directory made by kafka.sh start"
}

print_bootstrap_line() {
    printf 'KAFKA_BOOTSTRAP=%s\n' "$(cat "${1}/bootstrap")"
}

do_start() {
    local dir pid
    dir="$(resolve_dir "${1:-}")"
    if pid="$(broker_pid "$dir")"; then
        die "a broker (pid ${pid}) is already running from ${dir}; run 'kafka.sh stop ${dir}' first"
    fi
    if [[ -e "$dir" ]]; then
        if [[ -f "${dir}/${RUN_MARKER}" ]]; then
            rm -rf "$dir"
        elif [[ -d "$dir" && -z "$(ls -A "$dir")" ]]; then
            rmdir "$dir"
        else
            die "${dir} exists and was not made by kafka.sh; refusing to use it"
        fi
    fi
    ensure_installed

    local start=$SECONDS port cport cluster_id
    mkdir -p "${dir}/data" "${dir}/logs"
    : >"${dir}/${RUN_MARKER}"
    port="$(pick_port)"
    cport="$(pick_port "$port")"
    cluster_id="$(random_cluster_id)"
    write_server_properties "$dir" "$port" "$cport"
    write_broker_log_config "$dir"
    printf '127.0.0.1:%s\n' "$port" >"${dir}/bootstrap"
    printf '127.0.0.1:%s\n' "$cport" >"${dir}/controller"
    printf '%s\n' "$cluster_id" >"${dir}/cluster-id"
    printf 'KAFKA_BOOTSTRAP=127.0.0.1:%s\n' "$port" >"${dir}/env"

    if ! run_tool "$STORAGE_MAIN" format --standalone \
            --cluster-id "$cluster_id" --config "${dir}/server.properties" \
            >"${dir}/logs/format.log" 2>&1; then
        cat "${dir}/logs/format.log" >&2
        die "formatting the storage in ${dir}/data failed"
    fi

    log "starting Kafka ${KAFKA_VERSION} on 127.0.0.1:${port} (controller ${cport}) in ${dir}"
    launch_and_wait "$dir" "$start"
}

# Starts the broker of DIR, waits until it answers (stopping it if it does not), and
# prints the bootstrap line. START is when the caller began, for the log.
launch_and_wait() {
    local dir="$1" start="$2"
    launch_broker "$dir"
    if ! (wait_ready "$dir"); then
        stop_process "$dir"
        exit 1
    fi
    log "broker ready in $((SECONDS - start))s (pid $(cat "${dir}/kafka.pid"))"
    print_bootstrap_line "$dir"
}

do_start_broker() {
    local dir pid
    dir="$(resolve_dir "${1:-}")"
    check_run_dir "$dir"
    if pid="$(broker_pid "$dir")"; then
        log "broker already running (pid ${pid})"
        print_bootstrap_line "$dir"
        return 0
    fi
    ensure_installed
    local port start=$SECONDS
    port="$(cut -d: -f2 <"${dir}/bootstrap")"
    # The old process may take a moment to release its ports.
    local i
    for ((i = 0; i < 100; i++)); do
        port_in_use "$port" || break
        sleep 0.1
    done
    port_in_use "$port" && die "port ${port} is still in use; cannot restart the broker"
    log "starting broker again on $(cat "${dir}/bootstrap") in ${dir}"
    launch_and_wait "$dir" "$start"
}

do_stop_broker() {
    local dir
    dir="$(resolve_dir "${1:-}")"
    check_run_dir "$dir"
    stop_process "$dir"
}

do_stop() {
    local dir
    dir="$(resolve_dir "${1:-}")"
    if [[ ! -e "$dir" ]]; then
        log "nothing to stop in ${dir}"
        return 0
    fi
    [[ -f "${dir}/${RUN_MARKER}" ]] \
        || die "${dir} was not made by kafka.sh start; not touching it"
    stop_process "$dir"
    rm -rf "$dir"
    log "stopped; removed ${dir}"
}

do_status() {
    local dir pid
    dir="$(resolve_dir "${1:-}")"
    if pid="$(broker_pid "$dir")"; then
        log "running: pid ${pid}, bootstrap $(cat "${dir}/bootstrap"), dir ${dir}"
        print_bootstrap_line "$dir"
        return 0
    fi
    if [[ -f "${dir}/${RUN_MARKER}" ]]; then
        log "not running (stopped broker data in ${dir})"
    else
        log "not running (no run directory ${dir})"
    fi
    return 1
}

# Splits "[DIR] ARGS..." for commands whose arguments start with options.
# Sets CMD_DIR and leaves the rest in CMD_ARGS.
split_dir_args() {
    CMD_DIR=""
    CMD_ARGS=("$@")
    if (($# > 0)) && [[ "$1" != -* ]]; then
        CMD_DIR="$1"
        CMD_ARGS=("${@:2}")
    fi
}

main() {
    local cmd="${1:-}"
    (($# > 0)) && shift
    case "$cmd" in
        install) do_install ;;
        start) do_start "$@" ;;
        stop) do_stop "$@" ;;
        status) do_status "$@" ;;
        restart-broker)
            do_stop_broker "$@"
            do_start_broker "$@"
            ;;
        stop-broker) do_stop_broker "$@" ;;
        start-broker) do_start_broker "$@" ;;
        bootstrap)
            local dir
            dir="$(resolve_dir "${1:-}")"
            [[ -f "${dir}/bootstrap" ]] || die "no broker started in ${dir}"
            cat "${dir}/bootstrap"
            ;;
        topics)
            split_dir_args "$@"
            local dir
            dir="$(resolve_dir "$CMD_DIR")"
            [[ -f "${dir}/bootstrap" ]] || die "no broker started in ${dir}"
            run_tool "$TOPIC_MAIN" --bootstrap-server "$(cat "${dir}/bootstrap")" \
                "${CMD_ARGS[@]}"
            ;;
        tool)
            (($# > 0)) || die "usage: kafka.sh tool CLASS [ARGS...]"
            run_tool "$@"
            ;;
        logs)
            local dir
            dir="$(resolve_dir "${1:-}")"
            show_log_tail "$dir" "${2:-100}"
            ;;
        -h | --help | help) usage ;;
        "")
            usage
            exit 2
            ;;
        *)
            usage
            die "unknown command '${cmd}'"
            ;;
    esac
}

main "$@"
