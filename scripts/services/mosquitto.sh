#!/usr/bin/env bash
# Mosquitto for the tests: one broker on 127.0.0.1:18830 only, state under .cache/mosquitto/.
#
#   scripts/services/mosquitto.sh start|stop|status
#
# Anonymous clients are allowed; persistence is on, so QoS 1 messages queued for a persistent
# session (clean_session=false) survive a broker restart. start waits for a publish/subscribe
# round trip and writes TRIGGERHUB_TEST_MQTT=127.0.0.1:18830 into .cache/services.env.
# Override the port with TH_SVC_MQTT_PORT.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TH_SERVICE=mosquitto

MQTT_PORT="${TH_SVC_MQTT_PORT:-18830}"
MQTT_DIR="${TH_CACHE}/mosquitto"
MQTT_DATA="${MQTT_DIR}/data"
MQTT_CONF="${MQTT_DIR}/mosquitto.conf"
MQTT_LOG="${MQTT_DIR}/mosquitto.log"
MQTT_PIDFILE="${MQTT_DIR}/mosquitto.pid"
MQTT_START_TIMEOUT_S="${TH_SVC_START_TIMEOUT_S:-60}"
ENV_KEY=TRIGGERHUB_TEST_MQTT

is_running() { th_pid_alive "${MQTT_PIDFILE}"; }

# A retained QoS 1 message on a private topic, read back by a fresh subscriber, then cleared.
round_trip_ok() {
    local topic="triggerhub/health/$$" got
    mosquitto_pub -h 127.0.0.1 -p "${MQTT_PORT}" -q 1 -r -t "${topic}" -m ok || return 1
    got="$(mosquitto_sub -h 127.0.0.1 -p "${MQTT_PORT}" -q 1 -t "${topic}" -C 1 -W 5)" || return 1
    mosquitto_pub -h 127.0.0.1 -p "${MQTT_PORT}" -q 1 -r -n -t "${topic}" || return 1
    [[ ${got} == ok ]]
}

# Started as root, the broker drops privileges to user `mosquitto`, which then owns its folder;
# when that user cannot reach .cache (a checkout under e.g. /root) the broker stays root.
run_user() {
    if [[ $(id -u) -ne 0 ]]; then
        id -un
    elif id mosquitto >/dev/null 2>&1 && runuser -u mosquitto -- test -x "${TH_CACHE}" 2>/dev/null; then
        echo mosquitto
    else
        echo root
    fi
}

write_config() {
    mkdir -p "${MQTT_DATA}"
    touch "${MQTT_LOG}"
    cat >"${MQTT_CONF}" <<EOF
# Written by scripts/services/mosquitto.sh on every start; edits are lost.
listener ${MQTT_PORT} 127.0.0.1
allow_anonymous true
user $(run_user)
pid_file ${MQTT_PIDFILE}
persistence true
persistence_location ${MQTT_DATA}/
autosave_interval 5
max_queued_messages 100000
log_dest file ${MQTT_LOG}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S
EOF
    if [[ $(id -u) -eq 0 ]]; then
        local user
        user="$(run_user)"
        chown -R "${user}:" "${MQTT_DIR}"
        runuser -u "${user}" -- test -w "${MQTT_DATA}" \
            || th_die "user ${user} cannot write ${MQTT_DATA}; check the permissions of its parent directories"
    fi
}

start() {
    command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || th_apt_install mosquitto
    command -v mosquitto_pub >/dev/null || th_apt_install mosquitto-clients
    local broker
    broker="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    if is_running && round_trip_ok; then
        th_env_set "${ENV_KEY}" "127.0.0.1:${MQTT_PORT}"
        th_log "already running on 127.0.0.1:${MQTT_PORT}"
        return 0
    fi
    if ! is_running; then
        th_port_busy "${MQTT_PORT}" \
            && th_die "port 127.0.0.1:${MQTT_PORT} is taken by another process; stop it or set TH_SVC_MQTT_PORT"
        write_config
        th_log "starting on 127.0.0.1:${MQTT_PORT} (log ${MQTT_LOG})"
        rm -f "${MQTT_PIDFILE}"
        "${broker}" -c "${MQTT_CONF}" -d \
            || { th_tail_log "${MQTT_LOG}"; th_give_up "mosquitto refused to start with ${MQTT_CONF}"; }
    fi
    th_wait_until "${MQTT_START_TIMEOUT_S}" "publish/subscribe round trip on 127.0.0.1:${MQTT_PORT}" \
        round_trip_ok \
        || { th_tail_log "${MQTT_LOG}"; th_give_up "Mosquitto did not become ready within ${MQTT_START_TIMEOUT_S} s"; }
    th_env_set "${ENV_KEY}" "127.0.0.1:${MQTT_PORT}"
    th_log "ready on 127.0.0.1:${MQTT_PORT}"
}

stop() {
    th_env_unset "${ENV_KEY}"
    if ! is_running; then
        th_log "not running"
        return 0
    fi
    th_log "stopping pid $(head -n1 "${MQTT_PIDFILE}")"
    # SIGTERM makes Mosquitto save its persistence database before it exits.
    th_stop_pid "${MQTT_PIDFILE}" TERM 30
    rm -f "${MQTT_PIDFILE}"
}

status() {
    if is_running && round_trip_ok; then
        echo "mosquitto: running, pid $(head -n1 "${MQTT_PIDFILE}"), 127.0.0.1:${MQTT_PORT}"
    elif is_running; then
        echo "mosquitto: process $(head -n1 "${MQTT_PIDFILE}") alive but no round trip on 127.0.0.1:${MQTT_PORT}"
        return 1
    else
        echo "mosquitto: stopped"
        return 3
    fi
}

th_main "$@"
