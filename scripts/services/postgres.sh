#!/usr/bin/env bash
# PostgreSQL for the tests: one cluster under .cache/postgres/, on 127.0.0.1:55432 only.
#
#   scripts/services/postgres.sh start|stop|status
#
# start installs the Debian package if needed, creates the cluster once (role and database
# `triggerhub`, a generated password kept in .cache/postgres/password), waits until a real query
# answers over TCP, and writes TRIGGERHUB_TEST_PG_URL into .cache/services.env.
# wal_level=logical and the wal2json output plugin (package postgresql-<major>-wal2json) so the
# database-change feed's logical mode can decode changes.
# Override the port with TH_SVC_PG_PORT (e.g. to run a second checkout beside this one).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TH_SERVICE=postgres

PG_PORT="${TH_SVC_PG_PORT:-55432}"

# The cluster owner (user postgres when we are root) must reach the data folder through every
# parent directory. A checkout under e.g. /root is not searchable by others, so the state then
# lives under /var/tmp and .cache/postgres is a symlink to it.
pg_state_dir() {
    local link="${TH_CACHE}/postgres" real
    if [[ $(id -u) -ne 0 ]] || runuser -u postgres -- test -x "${TH_CACHE}" 2>/dev/null; then
        [[ -L ${link} ]] && readlink -f "${link}" || echo "${link}"
        return 0
    fi
    real="/var/tmp/triggerhub-postgres-$(echo "${TH_ROOT}" | sha256sum | cut -c1-12)"
    mkdir -p "${real}"
    chmod 755 "${real}"
    [[ -L ${link} ]] || { [[ -e ${link} ]] && rm -rf "${link}"; ln -s "${real}" "${link}"; }
    echo "${real}"
}
PG_DIR="$(pg_state_dir)"
PG_DATA="${PG_DIR}/data"
PG_LOG="${PG_DIR}/postgres.log"
PG_RUN="${PG_DIR}/run"
PG_PASSWORD_FILE="${PG_DIR}/password"
PG_START_TIMEOUT_S="${TH_SVC_START_TIMEOUT_S:-90}"
PG_USER=triggerhub
PG_DB=triggerhub
ENV_KEY=TRIGGERHUB_TEST_PG_URL

pg_bindir() {
    local initdb
    initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1)"
    [[ -n ${initdb} ]] && dirname "${initdb}"
}

# Runs a command as the cluster owner: root cannot run PostgreSQL, so root uses `postgres`.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pidfile() { echo "${PG_DATA}/postmaster.pid"; }

is_running() { th_pid_alive "$(pidfile)"; }

password() { cat "${PG_PASSWORD_FILE}"; }

url() { echo "postgresql+asyncpg://${PG_USER}:$(password)@127.0.0.1:${PG_PORT}/${PG_DB}"; }

tcp_query_ok() {
    PGPASSWORD="$(password)" PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "${PG_PORT}" \
        -U "${PG_USER}" -d "${PG_DB}" -tAc 'SELECT 1' | grep -qx 1
}

prepare_dirs() {
    mkdir -p "${PG_DIR}" "${PG_RUN}"
    if [[ ! -s ${PG_PASSWORD_FILE} ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"${PG_PASSWORD_FILE}")
    fi
    touch "${PG_LOG}"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "${PG_DIR}" "${PG_RUN}" "${PG_LOG}"
        [[ -d ${PG_DATA} ]] && chown -R postgres: "${PG_DATA}"
        runuser -u postgres -- test -w "${PG_DIR}" \
            || th_die "user postgres cannot write ${PG_DIR}; check the permissions of its parent directories"
    fi
}

init_cluster() {
    [[ -f ${PG_DATA}/PG_VERSION ]] && return 0
    th_log "creating the cluster in ${PG_DATA}"
    as_owner "$1/initdb" -D "${PG_DATA}" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >>"${PG_LOG}" 2>&1 \
        || { th_tail_log "${PG_LOG}"; th_give_up "initdb failed"; }
    echo "include_if_exists 'triggerhub.conf'" >>"${PG_DATA}/postgresql.conf"
}

# Settings are rewritten on every start so a changed port or socket folder takes effect.
# fsync/synchronous_commit off: a test cluster trades crash safety of the OS for speed.
write_settings() {
    cat >"${PG_DATA}/triggerhub.conf" <<EOF
listen_addresses = '127.0.0.1'
port = ${PG_PORT}
unix_socket_directories = '${PG_RUN}'
max_connections = 300
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    chown --reference="${PG_DATA}" "${PG_DATA}/triggerhub.conf"
}

bootstrap_role() {
    as_owner psql -h "${PG_RUN}" -p "${PG_PORT}" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
        -v pw="$(password)" >>"${PG_LOG}" 2>&1 <<'EOF' || return 1
SELECT format('CREATE ROLE triggerhub LOGIN SUPERUSER PASSWORD %L', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'triggerhub') \gexec
SELECT format('ALTER ROLE triggerhub LOGIN SUPERUSER PASSWORD %L', :'pw') \gexec
SELECT 'CREATE DATABASE triggerhub OWNER triggerhub'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'triggerhub') \gexec
EOF
}

start() {
    local bindir
    bindir="$(pg_bindir)" || true
    if [[ -z ${bindir} ]]; then
        th_apt_install postgresql
        bindir="$(pg_bindir)" || th_die "package postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
    fi
    command -v psql >/dev/null || th_apt_install postgresql-client
    # The logical-decoding feed's output plugin; a running server loads it when a slot first uses it.
    th_apt_install "postgresql-$(basename "$(dirname "${bindir}")")-wal2json"
    prepare_dirs
    if is_running && tcp_query_ok; then
        th_env_set "${ENV_KEY}" "$(url)"
        th_log "already running on 127.0.0.1:${PG_PORT}"
        return 0
    fi
    if ! is_running && th_port_busy "${PG_PORT}"; then
        th_die "port 127.0.0.1:${PG_PORT} is taken by another process; stop it or set TH_SVC_PG_PORT"
    fi
    init_cluster "${bindir}"
    write_settings
    if ! is_running; then
        th_log "starting on 127.0.0.1:${PG_PORT} (log ${PG_LOG})"
        as_owner "${bindir}/pg_ctl" -D "${PG_DATA}" -l "${PG_LOG}" -W start >/dev/null \
            || { th_tail_log "${PG_LOG}"; th_give_up "pg_ctl start failed"; }
    fi
    th_wait_until "${PG_START_TIMEOUT_S}" "pg_isready answer on 127.0.0.1:${PG_PORT}" \
        pg_isready -q -h 127.0.0.1 -p "${PG_PORT}" \
        || { th_tail_log "${PG_LOG}"; th_give_up "PostgreSQL did not become ready within ${PG_START_TIMEOUT_S} s"; }
    bootstrap_role || { th_tail_log "${PG_LOG}"; th_give_up "could not create role/database ${PG_USER}"; }
    th_wait_until 20 "SELECT 1 as ${PG_USER} over TCP" tcp_query_ok \
        || { th_tail_log "${PG_LOG}"; th_give_up "PostgreSQL answers pg_isready but not a query as ${PG_USER}"; }
    th_env_set "${ENV_KEY}" "$(url)"
    th_log "ready: database ${PG_DB} on 127.0.0.1:${PG_PORT}"
}

stop() {
    th_env_unset "${ENV_KEY}"
    if ! is_running; then
        th_log "not running"
        return 0
    fi
    th_log "stopping pid $(head -n1 "$(pidfile)")"
    # SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, checkpoint, exit.
    th_stop_pid "$(pidfile)" INT 60
}

status() {
    if is_running && tcp_query_ok; then
        echo "postgres: running, pid $(head -n1 "$(pidfile)"), 127.0.0.1:${PG_PORT}"
    elif is_running; then
        echo "postgres: process $(head -n1 "$(pidfile)") alive but not answering on 127.0.0.1:${PG_PORT}"
        return 1
    else
        echo "postgres: stopped"
        return 3
    fi
}

th_main "$@"
