#!/usr/bin/env bash
# Start, stop or query the Docker engine the hub and its tests use.
#
#   scripts/services/dockerd.sh start|stop|status
#
# State lives under <repo>/.cache/docker (data root, pid file, log). The engine listens on the
# default socket (/var/run/docker.sock) so the Docker SDK's from_env() finds it. It runs with
# --bridge=none --iptables=false: containers get no network unless asked (see invoker/docker.py).
# `start` is idempotent: if an engine already answers, it does nothing. `stop` only stops the
# engine this script started (the pid in the pid file).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state_dir="${TRIGGERHUB_DOCKER_STATE:-$repo/.cache/docker}"
pid_file="$state_dir/dockerd.pid"
log_file="$state_dir/dockerd.log"
start_timeout_s="${TRIGGERHUB_DOCKERD_TIMEOUT_S:-60}"

answers() { docker info >/dev/null 2>&1; }

our_pid() {
  [[ -f $pid_file ]] || return 1
  local pid
  pid=$(<"$pid_file")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

ensure_installed() {
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && return 0
  echo "dockerd.sh: docker.io is not installed; installing it with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
}

start() {
  if answers; then
    echo "dockerd.sh: a Docker engine already answers; nothing to do"
    return 0
  fi
  ensure_installed
  mkdir -p "$state_dir/data" "$state_dir/exec"
  # A pid file left by a killed engine would make dockerd refuse to start.
  if ! our_pid >/dev/null; then rm -f "$pid_file"; fi
  echo "dockerd.sh: starting dockerd (data root $state_dir/data, log $log_file)"
  setsid dockerd --bridge=none --iptables=false --ip-masq=false \
    --data-root "$state_dir/data" --exec-root "$state_dir/exec" \
    --pidfile "$pid_file" >>"$log_file" 2>&1 </dev/null &
  local waited_s=0
  until answers; do
    if ((waited_s >= start_timeout_s)); then
      echo "dockerd.sh: dockerd did not answer 'docker info' within ${start_timeout_s}s;" \
        "see $log_file (last lines below)" >&2
      tail -n 20 "$log_file" >&2 || true
      exit 1
    fi
    sleep 1
    waited_s=$((waited_s + 1))
  done
  echo "dockerd.sh: dockerd is up (pid $(cat "$pid_file"))"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    echo "dockerd.sh: no dockerd started by this script is running"
    rm -f "$pid_file"
    return 0
  fi
  echo "dockerd.sh: stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pid_file"; return 0; }
    sleep 1
  done
  echo "dockerd.sh: dockerd (pid $pid) did not stop within 30s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pid_file"
}

status() {
  if answers; then
    if pid=$(our_pid); then echo "running (pid $pid)"; else echo "running (not started by this script)"; fi
    return 0
  fi
  echo "not running"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
