# Shared helpers for the service scripts in this folder (sourced, never run).
#
# Every service keeps its data, pid and log files under $TH_CACHE/<service>/ and records how
# to reach it as KEY=VALUE lines in $TH_CACHE/services.env, which tests/plugins/services.py reads.
# shellcheck shell=bash

set -euo pipefail

TH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# TH_SVC_CACHE moves all state elsewhere, e.g. for a test that needs a private instance.
TH_CACHE="${TH_SVC_CACHE:-${TH_ROOT}/.cache}"
TH_SERVICES_ENV="${TH_CACHE}/services.env"
mkdir -p "${TH_CACHE}"

th_log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${TH_SERVICE:-service}" "$*" >&2; }

th_die() {
    printf '[%s %s] ERROR: %s\n' "$(date +%H:%M:%S)" "${TH_SERVICE:-service}" "$*" >&2
    exit 1
}

# th_usage "$@": the one interface every service script offers.
th_usage() {
    echo "usage: $0 start|stop|status" >&2
    exit 2
}

# th_main "$@": runs the service script's own start, stop or status function.
th_main() {
    case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) th_usage ;;
    esac
}

# th_give_up MESSAGE: stops a server that was launched but never became ready, then fails.
th_give_up() {
    stop >/dev/null 2>&1 || true
    th_die "$1"
}

# th_apt_install PACKAGE...: installs the Debian packages that are missing. apt-get update runs
# once per machine boot-ish window (stamp younger than 6 h), under a lock because the service
# scripts may be started in parallel and dpkg allows one writer.
th_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("${pkg}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || th_die "packages ${missing[*]} are missing; install them as root: apt-get install ${missing[*]}"
    th_log "installing Debian packages: ${missing[*]}"
    (
        flock -w 900 9 || th_die "timed out waiting for ${TH_CACHE}/apt.lock"
        local stamp="${TH_CACHE}/apt-updated.stamp" log="${TH_CACHE}/apt.log"
        # apt and dpkg progress goes to a log, not into the test output; its tail is shown on failure.
        if [[ -z $(find "${stamp}" -mmin -360 2>/dev/null) ]]; then
            DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get -o DPkg::Lock::Timeout=600 update -qq \
                >>"${log}" 2>&1 || { tail -n 20 "${log}" >&2; th_die "apt-get update failed (log: ${log})"; }
            touch "${stamp}"
        fi
        DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
            -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >>"${log}" 2>&1 \
            || { tail -n 20 "${log}" >&2; th_die "apt-get install ${missing[*]} failed (log: ${log})"; }
        th_log "installed ${missing[*]} (apt output in ${log})"
    ) 9>"${TH_CACHE}/apt.lock"
}

# th_env_set KEY VALUE: sets one line of services.env, keeping every other line.
th_env_set() {
    local key="$1" value="$2"
    (
        flock -w 60 9 || th_die "timed out waiting for ${TH_SERVICES_ENV}.lock"
        local tmp="${TH_SERVICES_ENV}.tmp.$$"
        { grep -v "^${key}=" "${TH_SERVICES_ENV}" 2>/dev/null || true; echo "${key}=${value}"; } >"${tmp}"
        mv "${tmp}" "${TH_SERVICES_ENV}"
    ) 9>"${TH_SERVICES_ENV}.lock"
}

# th_env_unset KEY: removes one line of services.env (used by stop).
th_env_unset() {
    local key="$1"
    [[ -f ${TH_SERVICES_ENV} ]] || return 0
    (
        flock -w 60 9 || th_die "timed out waiting for ${TH_SERVICES_ENV}.lock"
        local tmp="${TH_SERVICES_ENV}.tmp.$$"
        { grep -v "^${key}=" "${TH_SERVICES_ENV}" || true; } >"${tmp}"
        mv "${tmp}" "${TH_SERVICES_ENV}"
    ) 9>"${TH_SERVICES_ENV}.lock"
}

# th_pid_alive PIDFILE: true when the file names a live process.
th_pid_alive() {
    local pidfile="$1" pid
    [[ -s ${pidfile} ]] || return 1
    pid="$(head -n1 "${pidfile}")"
    [[ ${pid} =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null
}

# th_port_busy PORT: true when something listens on 127.0.0.1:PORT.
th_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# th_wait_until TIMEOUT_S WHAT COMMAND...: retries COMMAND (twice a second) until it succeeds.
# Fails with a message naming WHAT when TIMEOUT_S pass. If $TH_WATCH_PID is set and that process
# dies, it stops early: a crashed server will never answer.
th_wait_until() {
    local timeout_s="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        if [[ -n ${TH_WATCH_PID:-} ]] && ! kill -0 "${TH_WATCH_PID}" 2>/dev/null; then
            th_log "the server process ${TH_WATCH_PID} exited while waiting for ${what}"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            th_log "no ${what} after ${timeout_s} s"
            return 1
        fi
        sleep 0.5
    done
}

# th_stop_pid PIDFILE SIGNAL TIMEOUT_S: sends SIGNAL to the pid in PIDFILE and waits for it to
# exit; escalates to SIGKILL after TIMEOUT_S.
th_stop_pid() {
    local pidfile="$1" signal="$2" timeout_s="$3" pid
    th_pid_alive "${pidfile}" || return 0
    pid="$(head -n1 "${pidfile}")"
    kill "-${signal}" "${pid}" 2>/dev/null || return 0
    local deadline=$((SECONDS + timeout_s))
    while kill -0 "${pid}" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            th_log "pid ${pid} still running ${timeout_s} s after SIG${signal}; sending SIGKILL"
            kill -KILL "${pid}" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
}

# th_tail_log FILE: the last lines of a server log, for a failure message.
th_tail_log() {
    [[ -f $1 ]] || return 0
    echo "---- last lines of $1 ----" >&2
    tail -n 25 "$1" >&2
    echo "----" >&2
}
