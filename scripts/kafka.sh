#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker + controller) on loopback for
# development and tests. Jars are resolved from Maven Central via
# scripts/kafka/pom.xml; the data directory is temporary.
#
#   scripts/kafka.sh start    resolve, format, start, wait until it answers (no-op if running)
#   scripts/kafka.sh stop     stop the broker this script started (its data is kept)
#   scripts/kafka.sh purge    stop, then delete the broker's data
#   scripts/kafka.sh status   exit 0 when a broker answers on KAFKA_PORT
#
# Environment: KAFKA_PORT (default 19092), KAFKA_CONTROLLER_PORT (default
# KAFKA_PORT+1), KAFKA_HOME_DIR (pid, log and data; default a directory under
# TMPDIR named after the port), KAFKA_LIBS_DIR (resolved jars; default
# <repo>/.kafka/libs), KAFKA_HEAP (default 768m), KAFKA_START_TIMEOUT_S (how long
# start waits for the broker to answer; default 240).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${KAFKA_PORT:-19092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
home=${KAFKA_HOME_DIR:-${TMPDIR:-/tmp}/dlm-kafka-$port}
heap=${KAFKA_HEAP:-768m}
start_timeout=${KAFKA_START_TIMEOUT_S:-240}
libs=${KAFKA_LIBS_DIR:-$repo/.kafka/libs}
data=$home/data
pidfile=$home/kafka.pid
logfile=$home/kafka.log

answers() {
  # A broker answers when its port accepts and it replies to an ApiVersions request.
  node "$repo/scripts/kafka-ping.mjs" "127.0.0.1:$port" >/dev/null 2>&1
}

resolve() {
  local version
  version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$repo/scripts/kafka/pom.xml")
  if [ -f "$libs/.version" ] && [ "$(cat "$libs/.version")" = "$version" ]; then
    return
  fi
  echo "kafka: resolving Apache Kafka $version from Maven Central" >&2
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -f "$repo/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime >&2
  echo "$version" >"$libs/.version"
}

start() {
  if answers; then
    echo "kafka: already answering on 127.0.0.1:$port"
    return
  fi
  command -v java >/dev/null || { echo "kafka: java not found" >&2; exit 1; }
  command -v mvn >/dev/null || { echo "kafka: mvn not found" >&2; exit 1; }
  resolve
  mkdir -p "$data"
  cat >"$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.retention.hours=2
PROPS
  local cp="$libs/*"
  # The log4j configuration keeps the broker quiet; its output goes to $logfile.
  cat >"$home/log4j.properties" <<'L4J'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
L4J
  if [ ! -f "$data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java "-Dlog4j.configuration=file:$home/log4j.properties" -cp "$cp" kafka.tools.StorageTool random-uuid | tail -n 1)
    java "-Dlog4j.configuration=file:$home/log4j.properties" -cp "$cp" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$home/server.properties" >/dev/null
  fi
  nohup java "-Xms256m" "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    "-Dlog4j.configuration=file:$home/log4j.properties" \
    -cp "$cp" kafka.Kafka "$home/server.properties" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  # A JVM starting on a busy machine can take minutes: wait by the clock, not by tries.
  local deadline=$((SECONDS + start_timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if answers; then
      echo "kafka: answering on 127.0.0.1:$port (pid $(cat "$pidfile"))"
      return
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "kafka: broker exited; last log lines:" >&2
      tail -n 30 "$logfile" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "kafka: broker did not answer within $start_timeout s (KAFKA_START_TIMEOUT_S)" >&2
  tail -n 30 "$logfile" >&2
  exit 1
}

stop() {
  if [ ! -f "$pidfile" ]; then
    echo "kafka: not started by this script"
    return
  fi
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "kafka: stopped"
}

purge() {
  stop
  rm -rf "$data"
  echo "kafka: data deleted"
}

mkdir -p "$home"
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  purge) purge ;;
  status) if answers; then echo "kafka: answering on 127.0.0.1:$port"; else echo "kafka: not answering"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|purge|status" >&2; exit 2 ;;
esac
