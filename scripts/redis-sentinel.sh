#!/usr/bin/env bash
# A local Redis primary behind Sentinel for development and tests: a primary,
# a replica of it, and three Sentinels (quorum 2) on loopback; the Redis nodes
# and the Sentinels each require a password of their own.
#
#   scripts/redis-sentinel.sh start      start them (no-op if they answer)
#   scripts/redis-sentinel.sh stop       stop what this script started and delete its data
#   scripts/redis-sentinel.sh status     exit 0 when the Sentinels name a primary that answers
#   scripts/redis-sentinel.sh failover   ask the Sentinels to promote the replica now (SENTINEL FAILOVER)
#
# After start, REDIS_SENTINEL_HOME/test.env holds what the tests read
# (TEST_REDIS_SENTINELS, TEST_REDIS_SENTINEL_MASTER, TEST_REDIS_PASSWORD,
# TEST_REDIS_SENTINEL_PASSWORD) and service.env what the service reads (the
# REDIS_* equivalents):
#
#   set -a; . "$(scripts/redis-sentinel.sh home)/test.env"; set +a; npm test -- test/modules/sessions
#
# Environment: REDIS_SENTINEL_PORT (the primary's port, default 7201; the
# replica listens on the next port, the Sentinels on the three after it),
# REDIS_SENTINEL_HOME (pids, logs, data; default a directory under TMPDIR named
# after the port), REDIS_SENTINEL_MASTER (default dlm), REDIS_SENTINEL_DOWN_AFTER_MS
# (how long a primary is silent before the Sentinels fail it over, default 1000).
set -euo pipefail

port=${REDIS_SENTINEL_PORT:-7201}
data_ports=("$port" "$((port + 1))")
sentinel_ports=("$((port + 2))" "$((port + 3))" "$((port + 4))")
home=${REDIS_SENTINEL_HOME:-${TMPDIR:-/tmp}/dlm-redis-sentinel-$port}
master=${REDIS_SENTINEL_MASTER:-dlm}
down_after=${REDIS_SENTINEL_DOWN_AFTER_MS:-1000}

secret() { cat "$home/$1" 2>/dev/null || true; }
data_cli() { local node=$1; shift; REDISCLI_AUTH=$(secret password) redis-cli --no-auth-warning -h 127.0.0.1 -p "$node" "$@"; }
sentinel_cli() { local node=$1; shift; REDISCLI_AUTH=$(secret sentinel-password) redis-cli --no-auth-warning -h 127.0.0.1 -p "$node" "$@"; }

primary_port() {
  local node
  for node in "${sentinel_ports[@]}"; do
    sentinel_cli "$node" sentinel get-master-addr-by-name "$master" 2>/dev/null | sed -n 2p && return
  done
}

status() {
  [ -s "$home/password" ] || return 1
  local primary
  primary=$(primary_port)
  [ -n "$primary" ] && [ "$(data_cli "$primary" ping 2>/dev/null)" = PONG ] && data_cli "$primary" role 2>/dev/null | head -1 | grep -q '^master$'
}

random_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

write_env() {
  local sentinels
  sentinels=$(printf '127.0.0.1:%s,' "${sentinel_ports[@]}")
  sentinels=${sentinels%,}
  (
    umask 077
    printf 'TEST_REDIS_SENTINELS=%s\nTEST_REDIS_SENTINEL_MASTER=%s\nTEST_REDIS_PASSWORD=%s\nTEST_REDIS_SENTINEL_PASSWORD=%s\n' \
      "$sentinels" "$master" "$(secret password)" "$(secret sentinel-password)" >"$home/test.env"
    printf 'REDIS_SENTINELS=%s\nREDIS_SENTINEL_MASTER=%s\nREDIS_PASSWORD=%s\nREDIS_SENTINEL_PASSWORD=%s\n' \
      "$sentinels" "$master" "$(secret password)" "$(secret sentinel-password)" >"$home/service.env"
  )
}

start_process() { # name, configuration (the file holds the passwords, so they are not on a command line)
  mkdir -p "$home/$1"
  (umask 077; printf '%s\n' "$2" >"$home/$1/redis.conf")
}

start() {
  if status; then
    echo "redis-sentinel: already answering (Sentinels on 127.0.0.1:${sentinel_ports[0]}-${sentinel_ports[2]})"
    return
  fi
  command -v redis-server >/dev/null || { echo "redis-sentinel: redis-server not found" >&2; exit 1; }
  stop_processes
  rm -rf "$home"
  mkdir -p "$home"
  (umask 077; random_secret >"$home/password"; random_secret >"$home/sentinel-password")
  local password sentinel_password node
  password=$(secret password)
  sentinel_password=$(secret sentinel-password)
  for node in "${data_ports[@]}"; do
    local replica_of=""
    [ "$node" = "${data_ports[0]}" ] || replica_of="replicaof 127.0.0.1 ${data_ports[0]}"
    # Each node knows the password to replicate with: after a failover the old primary is a replica.
    start_process "$node" "port $node
bind 127.0.0.1
dir $home/$node
daemonize yes
pidfile $home/$node/redis.pid
logfile $home/$node/redis.log
save \"\"
appendonly no
requirepass $password
masterauth $password
$replica_of"
    redis-server "$home/$node/redis.conf"
  done
  for node in "${data_ports[@]}"; do
    for _ in $(seq 1 100); do [ "$(data_cli "$node" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  done
  for node in "${sentinel_ports[@]}"; do
    # sentinel-pass: how the Sentinels, which require a password, log in to one another.
    start_process "$node" "port $node
bind 127.0.0.1
dir $home/$node
daemonize yes
pidfile $home/$node/redis.pid
logfile $home/$node/redis.log
requirepass $sentinel_password
sentinel sentinel-pass $sentinel_password
sentinel monitor $master 127.0.0.1 ${data_ports[0]} 2
sentinel auth-pass $master $password
sentinel down-after-milliseconds $master $down_after
sentinel failover-timeout $master 10000
sentinel parallel-syncs $master 1"
    redis-server "$home/$node/redis.conf" --sentinel
  done
  for _ in $(seq 1 100); do status && break; sleep 0.1; done
  status || { echo "redis-sentinel: the Sentinels name no primary that answers (see $home/*/redis.log)" >&2; exit 1; }
  # The replica is promotable once the Sentinels know it and it has caught up.
  for _ in $(seq 1 100); do
    [ "$(sentinel_cli "${sentinel_ports[0]}" sentinel replicas "$master" 2>/dev/null | grep -c '^flags$')" -ge 1 ] &&
      data_cli "${data_ports[1]}" info replication 2>/dev/null | grep -q 'master_link_status:up' && break
    sleep 0.1
  done
  write_env
  echo "redis-sentinel: primary on 127.0.0.1:${data_ports[0]}, replica on ${data_ports[1]}, Sentinels on ${sentinel_ports[0]}-${sentinel_ports[2]} (master name $master); settings in $home/test.env and $home/service.env"
}

failover() {
  status || { echo "redis-sentinel: not running" >&2; exit 1; }
  local before after="" reply=""
  before=$(primary_port)
  # Refused (NOGOODSLAVE, INPROG) while the replica is still catching up after an earlier failover.
  for _ in $(seq 1 150); do
    reply=$(sentinel_cli "${sentinel_ports[0]}" sentinel failover "$master" 2>&1) && [ "$reply" = OK ] && break
    sleep 0.2
  done
  [ "$reply" = OK ] || { echo "redis-sentinel: the Sentinels refused the failover: $reply" >&2; exit 1; }
  for _ in $(seq 1 200); do
    after=$(primary_port)
    [ -n "$after" ] && [ "$after" != "$before" ] && status && break
    sleep 0.1
  done
  [ -n "$after" ] && [ "$after" != "$before" ] || { echo "redis-sentinel: the primary is still on $before" >&2; exit 1; }
  echo "redis-sentinel: the primary moved from $before to $after"
}

stop_processes() {
  local node pid
  for node in "${sentinel_ports[@]}" "${data_ports[@]}"; do
    [ -f "$home/$node/redis.pid" ] || continue
    pid=$(cat "$home/$node/redis.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
}

stop() {
  stop_processes
  rm -rf "$home"
  echo "redis-sentinel: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  failover) failover ;;
  home) echo "$home" ;;
  *) echo "usage: $0 start|stop|status|failover|home" >&2; exit 2 ;;
esac
