"""Round trips through each real service the scripts in scripts/services/ start."""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
import paho.mqtt.client as mqtt
import pytest

from tests.plugins.services import PROJECT_ROOT, asyncpg_dsn

MOSQUITTO_SCRIPT = PROJECT_ROOT / "scripts" / "services" / "mosquitto.sh"


@pytest.mark.postgres
async def test_postgres_session_database_answers_a_query(postgres_url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        await connection.execute("CREATE TABLE readings (sensor text PRIMARY KEY, celsius real)")
        await connection.execute("INSERT INTO readings VALUES ('t1', 21.5)")
        rows = await connection.fetch("SELECT sensor, celsius FROM readings")
        database = await connection.fetchval("SELECT current_database()")
    finally:
        await connection.close()
    assert [tuple(row) for row in rows] == [("t1", 21.5)]
    assert database == postgres_url.rsplit("/", 1)[1]


@pytest.mark.postgres
async def test_fresh_pg_url_is_a_new_empty_database(postgres_url: str, fresh_pg_url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(fresh_pg_url))
    try:
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        wal_level = await connection.fetchval("SHOW wal_level")
    finally:
        await connection.close()
    assert fresh_pg_url != postgres_url
    assert fresh_pg_url.startswith("postgresql+asyncpg://triggerhub:")
    assert tables == 0
    assert wal_level == "logical"


def connected_client(
    host: str,
    port: int,
    client_id: str,
    clean_session: bool,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None] | None = None,
) -> tuple[mqtt.Client, bool]:
    """A paho client with its network thread running, after the broker accepted it, and
    whether the broker still had a session for this client id (CONNACK session present)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    accepted = threading.Event()
    session_present: list[bool] = []

    def on_connect(_client: mqtt.Client, _data: object, flags: mqtt.ConnectFlags,
                   reason: mqtt.ReasonCode, _props: object) -> None:
        if not reason.is_failure:
            session_present.append(flags.session_present)
            accepted.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    if not accepted.wait(10):
        client.loop_stop()
        pytest.fail(f"Mosquitto at {host}:{port} did not accept client {client_id!r} within 10 s")
    return client, session_present[0]


@pytest.mark.mqtt
def test_mqtt_qos1_message_reaches_a_subscriber(mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    topic = "triggerhub/test/services/qos1"
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue(maxsize=10)
    subscribed = threading.Event()

    subscriber, _ = connected_client(host, port, "th-services-sub", clean_session=True)
    subscriber.on_message = lambda _client, _data, message: received.put_nowait(message)
    subscriber.on_subscribe = lambda _client, _data, _mid, _codes, _props: subscribed.set()
    publisher, _ = connected_client(host, port, "th-services-pub", clean_session=True)
    try:
        subscriber.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        info = publisher.publish(topic, b'{"celsius": 21.5}', qos=1)
        info.wait_for_publish(timeout=10)
        message = received.get(timeout=10)
    finally:
        for client in (subscriber, publisher):
            client.disconnect()
            client.loop_stop()

    assert info.is_published()
    assert (message.topic, message.payload, message.qos) == (topic, b'{"celsius": 21.5}', 1)


@pytest.mark.kafka
async def test_kafka_record_produced_is_consumed(kafka_bootstrap: str) -> None:
    topic = f"th-services-{secrets.token_hex(4)}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b'{"celsius": 21.5}', key=b"t1", partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            record = await consumer.getone()
    finally:
        await consumer.stop()

    assert (record.topic, record.partition, record.offset) == (topic, 0, sent.offset)
    assert (record.key, record.value) == (b"t1", b'{"celsius": 21.5}')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class PrivateBroker:
    """A second Mosquitto run by scripts/services/mosquitto.sh with its own state folder."""

    port: int
    cache_dir: Path

    def run(self, command: str) -> None:
        env = {**os.environ, "TH_SVC_CACHE": str(self.cache_dir), "TH_SVC_MQTT_PORT": str(self.port)}
        done = subprocess.run(["bash", str(MOSQUITTO_SCRIPT), command], env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            pytest.fail(f"mosquitto.sh {command} exited {done.returncode}: {done.stderr}", pytrace=False)


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(port=free_port(), cache_dir=tmp_path / "cache")
    broker.run("start")
    try:
        yield broker
    finally:
        broker.run("stop")


@pytest.mark.mqtt
@pytest.mark.slow
def test_mqtt_persistent_session_keeps_qos1_message_across_broker_restart(
    private_mosquitto: PrivateBroker,
) -> None:
    port = private_mosquitto.port
    topic = "triggerhub/test/services/persistent"
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue(maxsize=10)
    subscribed = threading.Event()

    subscriber, _ = connected_client("127.0.0.1", port, "th-persistent-sub", clean_session=False)
    subscriber.on_subscribe = lambda _client, _data, _mid, _codes, _props: subscribed.set()
    subscriber.subscribe(topic, qos=1)
    assert subscribed.wait(10)
    subscriber.disconnect()
    subscriber.loop_stop()

    publisher, _ = connected_client("127.0.0.1", port, "th-persistent-pub", clean_session=True)
    info = publisher.publish(topic, b"queued while away", qos=1)
    info.wait_for_publish(timeout=10)
    publisher.disconnect()
    publisher.loop_stop()

    private_mosquitto.run("stop")
    private_mosquitto.run("start")

    subscriber, session_present = connected_client(
        "127.0.0.1", port, "th-persistent-sub", clean_session=False,
        on_message=lambda _client, _data, message: received.put_nowait(message),
    )
    try:
        message = received.get(timeout=10)
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()

    assert session_present is True
    assert (message.topic, message.payload, message.qos) == (topic, b"queued while away", 1)
