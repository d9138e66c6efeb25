#!/usr/bin/env bash
# Start, stop or query the Docker engine the hub and its tests use.
#
#   scripts/services/dockerd.sh start|stop|status
#
# Each checkout runs its own engine: state (data root, exec root, pid file, log) and the API
# socket live under .cache/docker, so two checkouts on one machine never share or race for
# /var/run/docker.sock. `start` records DOCKER_HOST=unix://<that socket> in .cache/services.env
# (scripts/test exports it; the Docker SDK's from_env() reads it). The engine runs with
# --bridge=none --iptables=false: containers get no network unless asked (see invoker/docker.py).
# `start` is idempotent; `stop` stops only the engine whose pid this checkout recorded.
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TH_SERVICE=dockerd

state_dir="${TH_CACHE}/docker"
pid_file="${state_dir}/dockerd.pid"
log_file="${state_dir}/dockerd.log"
socket="${state_dir}/docker.sock"
docker_host="unix://${socket}"
start_timeout_s="${TRIGGERHUB_DOCKERD_TIMEOUT_S:-60}"

answers() { docker -H "${docker_host}" info >/dev/null 2>&1; }

start() {
    if th_pid_alive "${pid_file}" && answers; then
        th_env_set DOCKER_HOST "${docker_host}"
        th_log "already running (pid $(head -n1 "${pid_file}")) at ${docker_host}"
        return 0
    fi
    command -v dockerd >/dev/null && command -v docker >/dev/null || th_apt_install docker.io
    # A unix socket path longer than 107 bytes cannot be bound.
    ((${#socket} <= 100)) || th_die "socket path ${socket} is too long; set TH_SVC_CACHE to a shorter folder"
    mkdir -p "${state_dir}/data" "${state_dir}/exec"
    rm -f "${pid_file}" "${socket}"  # left by a killed engine; dockerd refuses a stale pid file
    th_log "starting dockerd at ${docker_host} (data root ${state_dir}/data, log ${log_file})"
    setsid dockerd --host "${docker_host}" --bridge=none --iptables=false --ip-masq=false \
        --data-root "${state_dir}/data" --exec-root "${state_dir}/exec" \
        --pidfile "${pid_file}" >>"${log_file}" 2>&1 </dev/null &
    TH_WATCH_PID=$!
    if ! th_wait_until "${start_timeout_s}" "answer from 'docker info' at ${docker_host}" answers; then
        th_tail_log "${log_file}"
        th_die "dockerd did not come up within ${start_timeout_s} s"
    fi
    th_env_set DOCKER_HOST "${docker_host}"
    th_log "dockerd is up (pid $(head -n1 "${pid_file}"))"
}

stop() {
    if ! th_pid_alive "${pid_file}"; then
        th_log "not running"
        rm -f "${pid_file}"
        th_env_unset DOCKER_HOST
        return 0
    fi
    th_log "stopping dockerd (pid $(head -n1 "${pid_file}"))"
    th_stop_pid "${pid_file}" TERM 30
    rm -f "${pid_file}"
    th_env_unset DOCKER_HOST
}

status() {
    if th_pid_alive "${pid_file}" && answers; then
        echo "running (pid $(head -n1 "${pid_file}")) at ${docker_host}"
        return 0
    fi
    echo "not running"
    return 3
}

th_main "$@"
