# Shared helpers for bench/run and bench/fill (sourced, not executed).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
BROKERS="${BENCH_BROKERS:-127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096}"
STORE="${BENCH_STORE:-http://127.0.0.1:18086}"
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$REPO/target/bench}"
TOOL="$CARGO_TARGET_DIR/release/pulsewire-bench"
SVC_BIN="${BENCH_SVC_BIN:-$REPO/target/release}"
# The local stack's Kafka jars (KAFKA_HOME, or its cache): one place names the version.
KAFKA_LIB="${KAFKA_LIB:-$(PULSEWIRE_LOCAL_CACHE="${PULSEWIRE_LOCAL_CACHE:-$REPO/tests/local/.cache}" \
  "$REPO/tests/local/stack" kafka-libs)}"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/results}"
VENV="$BENCH_DIR/.venv"
mkdir -p "$RESULTS"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# A Kafka command-line tool from the cached distribution, e.g. ktool org.apache.kafka.tools.TopicCommand --list
TOOL_LOG4J="$BENCH_DIR/.state/tools-log4j2.properties"
mkdir -p "$BENCH_DIR/.state"
[[ -f "$TOOL_LOG4J" ]] || printf '%s\n' 'status = error' 'appender.err.type = Console' \
  'appender.err.name = STDERR' 'appender.err.target = SYSTEM_ERR' \
  'appender.err.layout.type = PatternLayout' 'appender.err.layout.pattern = %p %m%n' \
  'rootLogger.level = ERROR' 'rootLogger.appenderRef.err.ref = STDERR' > "$TOOL_LOG4J"
ktool() {
  local main="$1"; shift
  java -Xms128m -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$TOOL_LOG4J" -cp "$KAFKA_LIB/*" "$main" "$@"
}

topics() { ktool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" "$@"; }

# Creates a topic like provisioning's defaults: 3 partitions, RF 3, min.insync.replicas=2.
# (through the bench tool's admin client: a JVM per call costs seconds of CPU on 2 cores)
topic_create() {
  local compact=(); [[ "${2:-}" == cleanup.policy=compact ]] && compact=(--compact)
  "$TOOL" --brokers "$BROKERS" mktopic "${compact[@]}" "$1"
}
# Deletes every topic whose name starts with one of the given prefixes.
topics_delete() { "$TOOL" --brokers "$BROKERS" rmtopics "$@" 2>/dev/null || true; }

build_tool() { (cd "$BENCH_DIR/passthrough" && cargo build --release -q); }
