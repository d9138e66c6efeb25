#!/usr/bin/env bash
# Apache Kafka 4 for the tests: one KRaft node (broker+controller) on 127.0.0.1:19092, its
# controller on 127.0.0.1:19093, state under .cache/kafka/.
#
#   scripts/services/kafka.sh start|stop|status
#
# No Debian or PyPI package ships the broker, so the jars come from Maven Central through
# deploy/kafka/pom.xml into .cache/kafka/libs (fetched again only when the pom changes).
# start formats the storage once, runs kafka.Kafka with deploy/kafka/server.properties, waits
# until the admin client lists topics, and writes TRIGGERHUB_TEST_KAFKA into .cache/services.env.
# Overrides: TH_SVC_KAFKA_PORT, TH_SVC_KAFKA_CONTROLLER_PORT, TH_SVC_KAFKA_HEAP (default 512m).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TH_SERVICE=kafka

KAFKA_PORT="${TH_SVC_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${TH_SVC_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP="${TH_SVC_KAFKA_HEAP:-512m}"
KAFKA_POM="${TH_ROOT}/deploy/kafka/pom.xml"
KAFKA_PROPERTIES_TEMPLATE="${TH_ROOT}/deploy/kafka/server.properties"
KAFKA_DIR="${TH_CACHE}/kafka"
KAFKA_LIBS="${KAFKA_DIR}/libs"
KAFKA_DATA="${KAFKA_DIR}/data"
KAFKA_PROPERTIES="${KAFKA_DIR}/server.properties"
KAFKA_LOG="${KAFKA_DIR}/kafka.log"
KAFKA_PIDFILE="${KAFKA_DIR}/kafka.pid"
KAFKA_START_TIMEOUT_S="${TH_SVC_START_TIMEOUT_S:-180}"
ENV_KEY=TRIGGERHUB_TEST_KAFKA

is_running() { th_pid_alive "${KAFKA_PIDFILE}"; }

kafka_java() { java -Xms64m -Xmx256m -cp "${KAFKA_LIBS}/*" "$@"; }

topics_listed() {
    timeout 60 java -Xmx128m -XX:TieredStopAtLevel=1 -cp "${KAFKA_LIBS}/*" \
        -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:${KAFKA_PORT}" --list
}

# The jars are fetched again only when the pom changed since the last successful copy.
fetch_libs() {
    command -v java >/dev/null || th_die "java is not installed; Kafka 4 needs Java 17 or newer"
    local digest stamp="${KAFKA_LIBS}/.pom.sha256"
    digest="$(sha256sum "${KAFKA_POM}" | cut -d' ' -f1)"
    [[ -f ${stamp} && $(cat "${stamp}") == "${digest}" ]] && return 0
    command -v mvn >/dev/null || th_apt_install maven
    th_log "fetching the Kafka jars listed in ${KAFKA_POM}"
    rm -rf "${KAFKA_LIBS}"
    mvn -B -q -f "${KAFKA_POM}" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="${KAFKA_LIBS}" >"${KAFKA_DIR}/mvn.log" 2>&1 \
        || { th_tail_log "${KAFKA_DIR}/mvn.log"; th_die "mvn could not fetch the Kafka jars"; }
    echo "${digest}" >"${stamp}"
}

write_properties() {
    sed -e "s/19092/${KAFKA_PORT}/g" -e "s/19093/${KAFKA_CONTROLLER_PORT}/g" \
        -e "s|^log.dirs=.*|log.dirs=${KAFKA_DATA}|" \
        "${KAFKA_PROPERTIES_TEMPLATE}" >"${KAFKA_PROPERTIES}"
}

format_storage() {
    [[ -f ${KAFKA_DATA}/meta.properties ]] && return 0
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"${KAFKA_LOG}")" \
        || th_die "kafka.tools.StorageTool random-uuid failed (see ${KAFKA_LOG})"
    th_log "formatting ${KAFKA_DATA} as cluster ${cluster_id}"
    kafka_java kafka.tools.StorageTool format --standalone -t "${cluster_id}" \
        -c "${KAFKA_PROPERTIES}" >>"${KAFKA_LOG}" 2>&1 \
        || { th_tail_log "${KAFKA_LOG}"; th_give_up "formatting the Kafka storage failed"; }
}

launch() {
    th_log "starting on 127.0.0.1:${KAFKA_PORT} (controller ${KAFKA_CONTROLLER_PORT}, log ${KAFKA_LOG})"
    # setsid: the broker outlives this script and ignores the caller's terminal signals.
    setsid java "-Xms${KAFKA_HEAP}" "-Xmx${KAFKA_HEAP}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.showDateTime=true \
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS" \
        -cp "${KAFKA_LIBS}/*" kafka.Kafka "${KAFKA_PROPERTIES}" \
        </dev/null >>"${KAFKA_LOG}" 2>&1 &
    echo $! >"${KAFKA_PIDFILE}"
}

start() {
    mkdir -p "${KAFKA_DIR}"
    fetch_libs
    if is_running && topics_listed >/dev/null 2>&1; then
        th_env_set "${ENV_KEY}" "127.0.0.1:${KAFKA_PORT}"
        th_log "already running on 127.0.0.1:${KAFKA_PORT}"
        return 0
    fi
    if ! is_running; then
        local port
        for port in "${KAFKA_PORT}" "${KAFKA_CONTROLLER_PORT}"; do
            if th_port_busy "${port}"; then
                th_die "port 127.0.0.1:${port} is taken by another process; stop it or set TH_SVC_KAFKA_PORT / TH_SVC_KAFKA_CONTROLLER_PORT"
            fi
        done
        write_properties
        format_storage
        launch
    fi
    TH_WATCH_PID="$(head -n1 "${KAFKA_PIDFILE}")"
    th_wait_until "${KAFKA_START_TIMEOUT_S}" "listener on 127.0.0.1:${KAFKA_PORT}" \
        th_port_busy "${KAFKA_PORT}" \
        && th_wait_until "${KAFKA_START_TIMEOUT_S}" "topic list from the admin client" topics_listed \
        || { th_tail_log "${KAFKA_LOG}"; th_give_up "Kafka did not become ready within ${KAFKA_START_TIMEOUT_S} s"; }
    unset TH_WATCH_PID
    th_env_set "${ENV_KEY}" "127.0.0.1:${KAFKA_PORT}"
    th_log "ready on 127.0.0.1:${KAFKA_PORT}"
}

stop() {
    th_env_unset "${ENV_KEY}"
    if ! is_running; then
        th_log "not running"
        return 0
    fi
    th_log "stopping pid $(head -n1 "${KAFKA_PIDFILE}")"
    # SIGTERM runs the broker's controlled shutdown (flushes logs, leaves the quorum).
    th_stop_pid "${KAFKA_PIDFILE}" TERM 90
    rm -f "${KAFKA_PIDFILE}"
}

status() {
    if is_running && topics_listed >/dev/null 2>&1; then
        echo "kafka: running, pid $(head -n1 "${KAFKA_PIDFILE}"), 127.0.0.1:${KAFKA_PORT}"
    elif is_running; then
        echo "kafka: process $(head -n1 "${KAFKA_PIDFILE}") alive but no topic list from 127.0.0.1:${KAFKA_PORT}"
        return 1
    else
        echo "kafka: stopped"
        return 3
    fi
}

th_main "$@"
