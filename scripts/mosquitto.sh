#!/usr/bin/env bash
# A private Mosquitto 2 (Debian's package) on loopback: an MQTT 5 broker with
# shared subscriptions, for the tests and benchmark of telemetry ingest by
# subscription (INGEST_MQTT_URL). It never touches the machine's own Mosquitto:
# it runs with a configuration of its own, from MOSQUITTO_HOME_DIR.
#
#   scripts/mosquitto.sh start            write the configuration, start, wait until it listens (no-op if running)
#   scripts/mosquitto.sh stop             stop the broker this script started (its persistence file is kept)
#   scripts/mosquitto.sh purge            stop, then delete MOSQUITTO_HOME_DIR
#   scripts/mosquitto.sh status           exit 0 when it is running
#   scripts/mosquitto.sh user NAME PASS   add or change a user (a device: NAME = its id); the broker reloads
#   scripts/mosquitto.sh users PASS NAME...  the same for several users with one password, one reload
#
# Who may do what (the ACL file, as the EMQX authorization of the product):
#   - the service identity (MOSQUITTO_SERVICE_USER) may only read
#     $share/$MOSQUITTO_SHARE_GROUP/devices/+/telemetry (the shared subscription);
#   - a device (username = its id) may only publish devices/{its id}/telemetry
#     (and command replies) and read devices/{its id}/commands;
#   - MOSQUITTO_ACL_EXTRA, when set, is appended (lines of Mosquitto's ACL
#     syntax): how a test shows what a mistaken ACL lets through.
# Anonymous clients are refused; passwords are in a mosquitto_passwd file.
#
# Environment: MOSQUITTO_PORT (default 18830), MOSQUITTO_HOME_DIR (default a
# directory under TMPDIR named after the port), MOSQUITTO_SERVICE_USER
# (default device-link-ingest), MOSQUITTO_SERVICE_PASSWORD (required by start),
# MOSQUITTO_SHARE_GROUP (default device-link), MOSQUITTO_BIN (default
# /usr/sbin/mosquitto).
set -euo pipefail

port=${MOSQUITTO_PORT:-18830}
home=${MOSQUITTO_HOME_DIR:-${TMPDIR:-/tmp}/dlm-mosquitto-$port}
service_user=${MOSQUITTO_SERVICE_USER:-device-link-ingest}
group=${MOSQUITTO_SHARE_GROUP:-device-link}
bin=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
pidfile=$home/mosquitto.pid

running() {
  [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# add_users PASSWORD NAME...: each NAME with that password in the password file; a running broker reloads once.
add_users() {
  local password=$1 name
  shift
  mkdir -p "$home"
  [[ -f $home/passwd ]] || install -m 600 /dev/null "$home/passwd"
  for name in "$@"; do mosquitto_passwd -b "$home/passwd" "$name" "$password" 2>/dev/null; done
  if running; then kill -HUP "$(cat "$pidfile")"; fi
}

write_config() {
  mkdir -p "$home/data"
  cat >"$home/mosquitto.conf" <<EOF
# Written by scripts/mosquitto.sh: a private broker on loopback.
pid_file $pidfile
# Stays the user who started it (as root it would switch to "mosquitto", who cannot write here).
user $(id -un)
persistence true
persistence_location $home/data/
log_dest file $home/mosquitto.log
log_type error
log_type warning
log_type notice
per_listener_settings false
allow_anonymous false
password_file $home/passwd
acl_file $home/acl
max_inflight_messages 0
max_queued_messages 100000
listener $port 127.0.0.1
EOF
  {
    echo "# The service identity: the shared subscription to every device's telemetry, nothing else."
    echo "user $service_user"
    echo "topic read \$share/$group/devices/+/telemetry"
    echo "# Mosquitto checks each delivery against the message's own topic too, so reading the"
    echo "# telemetry topics is allowed as well: telemetry, and nothing else, reaches this identity."
    echo "topic read devices/+/telemetry"
    echo
    echo "# Every other user is a device: only its own topics (%u = the username = the device id)."
    echo "pattern write devices/%u/telemetry"
    echo "pattern write devices/%u/command-replies"
    echo "pattern read devices/%u/commands"
    if [[ -n ${MOSQUITTO_ACL_EXTRA:-} ]]; then
      echo
      echo "# MOSQUITTO_ACL_EXTRA"
      printf '%s\n' "$MOSQUITTO_ACL_EXTRA"
    fi
  } >"$home/acl"
}

case "${1:-}" in
  start)
    if running; then exit 0; fi
    : "${MOSQUITTO_SERVICE_PASSWORD:?MOSQUITTO_SERVICE_PASSWORD is required}"
    [[ -x $bin ]] || { echo "mosquitto: $bin not found (apt-get install mosquitto)" >&2; exit 1; }
    write_config
    if [[ ! -f $home/passwd ]]; then
      install -m 600 /dev/null "$home/passwd"
    fi
    mosquitto_passwd -b "$home/passwd" "$service_user" "$MOSQUITTO_SERVICE_PASSWORD" 2>/dev/null
    "$bin" -c "$home/mosquitto.conf" -d
    for _ in $(seq 1 100); do
      if listening; then exit 0; fi
      sleep 0.1
    done
    echo "mosquitto: did not listen on 127.0.0.1:$port (see $home/mosquitto.log)" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
    ;;
  purge)
    "$0" stop
    rm -rf "$home"
    ;;
  status)
    running && listening
    ;;
  user)
    [[ $# -eq 3 ]] || { echo "usage: $0 user NAME PASSWORD" >&2; exit 2; }
    add_users "$3" "$2"
    ;;
  users)
    [[ $# -ge 3 ]] || { echo "usage: $0 users PASSWORD NAME..." >&2; exit 2; }
    add_users "$2" "${@:3}"
    ;;
  *)
    echo "usage: $0 start|stop|purge|status|user NAME PASSWORD|users PASSWORD NAME..." >&2
    exit 2
    ;;
esac
