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
# KAFKA_SECURITY=sasl_ssl starts it as managed Kafka is reached: clients on
# KAFKA_PORT over SASL_SSL (SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN), and on
# KAFKA_PORT+2 over TLS with a client certificate required (mutual TLS); a
# development CA and the certificates are generated into KAFKA_HOME_DIR/tls
# once, and the SCRAM users are created when the storage is formatted. The
# broker talks to itself over a plaintext listener on KAFKA_PORT+3 (loopback).
# KAFKA_HOME_DIR/client.env then holds what a client needs (the KAFKA_*
# variables of the service; KAFKA_SASL_PASSWORD, default random, is set once).
#
# Environment: KAFKA_PORT (default 19092), KAFKA_CONTROLLER_PORT (default
# KAFKA_PORT+1), KAFKA_HOME_DIR (pid, log and data; default a directory under
# TMPDIR named after the port), KAFKA_LIBS_DIR (resolved jars; default
# <repo>/.kafka/libs), KAFKA_HEAP (default 768m), KAFKA_START_TIMEOUT_S (how long
# start waits for the broker to answer; default 240); with KAFKA_SECURITY=sasl_ssl
# also KAFKA_MTLS_PORT (default KAFKA_PORT+2) and KAFKA_INTERNAL_PORT (default
# KAFKA_PORT+3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${KAFKA_PORT:-19092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
home=${KAFKA_HOME_DIR:-${TMPDIR:-/tmp}/dlm-kafka-$port}
heap=${KAFKA_HEAP:-768m}
start_timeout=${KAFKA_START_TIMEOUT_S:-240}
libs=${KAFKA_LIBS_DIR:-$repo/.kafka/libs}
security=${KAFKA_SECURITY:-plaintext}
case "$security" in plaintext | sasl_ssl) ;; *) echo "kafka: KAFKA_SECURITY must be plaintext or sasl_ssl" >&2; exit 2 ;; esac
mtls_port=${KAFKA_MTLS_PORT:-$((port + 2))}
internal_port=${KAFKA_INTERNAL_PORT:-$((port + 3))}
sasl_user=devicelink
data=$home/data
pidfile=$home/kafka.pid
logfile=$home/kafka.log

answers() {
  # A broker answers when its port accepts and it replies to an ApiVersions
  # request (a secured broker on its loopback plaintext listener).
  local ping_port=$port
  if [ "$security" = sasl_ssl ]; then ping_port=$internal_port; fi
  node "$repo/scripts/kafka-ping.mjs" "127.0.0.1:$ping_port" >/dev/null 2>&1
}

# The development CA, the broker's certificate and a client certificate for
# mutual TLS, all PEM, generated once. Kafka reads PEM key stores directly.
tls_material() {
  local tls=$home/tls
  if [ -s "$tls/ca.crt" ] && [ -s "$tls/broker.pem" ] && [ -s "$tls/client.crt" ]; then return; fi
  command -v openssl >/dev/null || { echo "kafka: openssl not found (KAFKA_SECURITY=sasl_ssl)" >&2; exit 1; }
  rm -rf "$tls" && mkdir -p "$tls"
  (
    umask 077
    cd "$tls"
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 825 -subj "/CN=device-link-mqtt Kafka development CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.crt 2>/dev/null
    sign() { # name, subject, extensions
      openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -sha256 -days 825 -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial ca.srl \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    }
    sign broker "/CN=localhost" "$(printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1')"
    sign client "/CN=$sasl_user" "$(printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth')"
    cat broker.key broker.crt >broker.pem
    rm -f ca.key ca.srl ./*.csr ./*.ext broker.key broker.crt
    chmod 0644 ca.crt client.crt
  )
}

# The client password (random, once) and what a client of this broker sets.
client_env() {
  local password_file=$home/sasl-password
  if [ ! -s "$password_file" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$password_file")
  fi
  sasl_password=${KAFKA_SASL_PASSWORD:-$(cat "$password_file")}
  cat >"$home/client.env" <<ENV
KAFKA_BROKERS=127.0.0.1:$port
KAFKA_SASL_MECHANISM=scram-sha-512
KAFKA_SASL_USERNAME=$sasl_user
KAFKA_SASL_PASSWORD=$sasl_password
KAFKA_TLS=true
KAFKA_TLS_CA_FILE=$home/tls/ca.crt
KAFKA_MTLS_BROKERS=127.0.0.1:$mtls_port
KAFKA_TLS_CERT_FILE_FOR_MTLS=$home/tls/client.crt
KAFKA_TLS_KEY_FILE_FOR_MTLS=$home/tls/client.key
ENV
  chmod 0600 "$home/client.env"
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
  if [ "$security" = sasl_ssl ]; then
    tls_material
    client_env
    listeners="SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$mtls_port,INTERNAL://127.0.0.1:$internal_port,CONTROLLER://127.0.0.1:$controller_port"
    advertised="SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$mtls_port,INTERNAL://127.0.0.1:$internal_port"
    protocols="SASL_SSL:SASL_SSL,SSL:SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    inter=INTERNAL
  else
    listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port"
    advertised="PLAINTEXT://127.0.0.1:$port"
    protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    inter=PLAINTEXT
  fi
  cat >"$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
inter.broker.listener.name=$inter
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
  if [ "$security" = sasl_ssl ]; then
    cat >>"$home/server.properties" <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=$home/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$home/tls/ca.crt
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$sasl_password";
PROPS
  fi
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
    local scram=()
    if [ "$security" = sasl_ssl ]; then
      scram=(--add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$sasl_password]" --add-scram "SCRAM-SHA-256=[name=$sasl_user,password=$sasl_password]")
    fi
    java "-Dlog4j.configuration=file:$home/log4j.properties" -cp "$cp" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$home/server.properties" "${scram[@]}" >/dev/null
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
      if [ "$security" = sasl_ssl ]; then echo "kafka: SASL_SSL on $port, mutual TLS on $mtls_port; client settings in $home/client.env"; fi
      return 0
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
