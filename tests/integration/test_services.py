"""Round trips through each real service the scripts in scripts/services/ start."""

from __future__ import annotations

import asyncio
import queue
import secrets
import threading

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
import paho.mqtt.client as mqtt
import pytest

from tests.plugins.services import asyncpg_dsn


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


def connected_client(host: str, port: int, client_id: str, clean_session: bool) -> mqtt.Client:
    """A paho client with its network thread running, after the broker accepted it."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    accepted = threading.Event()
    client.on_connect = lambda _client, _data, _flags, reason, _props: (
        accepted.set() if not reason.is_failure else None
    )
    client.connect(host, port)
    client.loop_start()
    if not accepted.wait(10):
        client.loop_stop()
        pytest.fail(f"Mosquitto at {host}:{port} did not accept client {client_id!r} within 10 s")
    return client


@pytest.mark.mqtt
def test_mqtt_qos1_message_reaches_a_subscriber(mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    topic = "triggerhub/test/services/qos1"
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue(maxsize=10)
    subscribed = threading.Event()

    subscriber = connected_client(host, port, "th-services-sub", clean_session=True)
    subscriber.on_message = lambda _client, _data, message: received.put_nowait(message)
    subscriber.on_subscribe = lambda _client, _data, _mid, _codes, _props: subscribed.set()
    publisher = connected_client(host, port, "th-services-pub", clean_session=True)
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
