#!/usr/bin/env bash
# A local Redis Cluster for development and tests: three primaries on
# loopback, no replicas, every slot assigned, a password on every node.
#
#   scripts/redis-cluster.sh start    start the nodes and join them into a cluster (no-op if it answers)
#   scripts/redis-cluster.sh stop     stop the nodes this script started and delete their data
#   scripts/redis-cluster.sh status   exit 0 when every node answers and the cluster serves every slot
#
# After start, REDIS_CLUSTER_HOME/test.env holds what the tests read
# (TEST_REDIS_CLUSTER_NODES, TEST_REDIS_PASSWORD) and service.env what the
# service reads (REDIS_CLUSTER_NODES, REDIS_PASSWORD):
#
#   set -a; . "$(scripts/redis-cluster.sh home)/test.env"; set +a; npm test -- test/modules/sessions
#
# Environment: REDIS_CLUSTER_PORT (the first node's port, default 7101; the
# others follow it, and each node's cluster bus is its port + 10000),
# REDIS_CLUSTER_HOME (pids, logs, data; default a directory under TMPDIR named
# after the port), REDIS_CLUSTER_PASSWORD (default random, set once per start).
set -euo pipefail

port=${REDIS_CLUSTER_PORT:-7101}
ports=("$port" "$((port + 1))" "$((port + 2))")
home=${REDIS_CLUSTER_HOME:-${TMPDIR:-/tmp}/dlm-redis-cluster-$port}
password_file=$home/password

cli() { # port, arguments...
  local node=$1
  shift
  REDISCLI_AUTH=$(cat "$password_file" 2>/dev/null || true) redis-cli --no-auth-warning -h 127.0.0.1 -p "$node" "$@"
}

answers() { [ "$(cli "$1" ping 2>/dev/null)" = PONG ]; }

serves_every_slot() {
  local node
  for node in "${ports[@]}"; do
    cli "$node" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

status() {
  local node
  [ -s "$password_file" ] || return 1
  for node in "${ports[@]}"; do answers "$node" || return 1; done
  serves_every_slot
}

write_env() {
  local nodes password
  nodes=$(printf '127.0.0.1:%s,' "${ports[@]}")
  nodes=${nodes%,}
  password=$(cat "$password_file")
  (
    umask 077
    printf 'TEST_REDIS_CLUSTER_NODES=%s\nTEST_REDIS_PASSWORD=%s\n' "$nodes" "$password" >"$home/test.env"
    printf 'REDIS_CLUSTER_NODES=%s\nREDIS_PASSWORD=%s\n' "$nodes" "$password" >"$home/service.env"
  )
}

start() {
  if status; then
    echo "redis-cluster: already answering on 127.0.0.1:${ports[0]}-${ports[2]}"
    return
  fi
  command -v redis-server >/dev/null || { echo "redis-cluster: redis-server not found" >&2; exit 1; }
  stop_nodes
  rm -rf "$home"
  mkdir -p "$home"
  (umask 077; printf '%s' "${REDIS_CLUSTER_PASSWORD:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}" >"$password_file")
  local node password
  password=$(cat "$password_file")
  for node in "${ports[@]}"; do
    mkdir -p "$home/$node"
    # The password goes in a configuration file of the node's own, not on its command line.
    (
      umask 077
      cat >"$home/$node/redis.conf" <<CONF
port $node
bind 127.0.0.1
dir $home/$node
daemonize yes
pidfile $home/$node/redis.pid
logfile $home/$node/redis.log
save ""
appendonly no
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
requirepass $password
masterauth $password
CONF
    )
    redis-server "$home/$node/redis.conf"
  done
  for node in "${ports[@]}"; do
    for _ in $(seq 1 100); do answers "$node" && break; sleep 0.1; done
    answers "$node" || { echo "redis-cluster: the node on $node did not start (see $home/$node/redis.log)" >&2; exit 1; }
  done
  local addresses=()
  for node in "${ports[@]}"; do addresses+=("127.0.0.1:$node"); done
  REDISCLI_AUTH=$password redis-cli --no-auth-warning --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >"$home/create.log" 2>&1 ||
    { echo "redis-cluster: creating the cluster failed (see $home/create.log)" >&2; exit 1; }
  for _ in $(seq 1 100); do serves_every_slot && break; sleep 0.1; done
  serves_every_slot || { echo "redis-cluster: the cluster does not serve every slot" >&2; exit 1; }
  write_env
  echo "redis-cluster: three primaries on 127.0.0.1:${ports[0]}-${ports[2]}; settings in $home/test.env and $home/service.env"
}

stop_nodes() {
  local node pid
  for node in "${ports[@]}"; do
    [ -f "$home/$node/redis.pid" ] || continue
    pid=$(cat "$home/$node/redis.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
}

stop() {
  stop_nodes
  rm -rf "$home"
  echo "redis-cluster: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  home) echo "$home" ;;
  *) echo "usage: $0 start|stop|status|home" >&2; exit 2 ;;
esac
