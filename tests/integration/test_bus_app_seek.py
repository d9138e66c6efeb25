"""The workers' Faust consumer seeks back after a rebalance (bus/app.py `seek_to_committed`), on
the real broker: a partition without a committed offset, or committed at 0, goes back to its
beginning. aiokafka's own seek leaves such a partition where its fetcher got to, and Faust drops
what was fetched during a rebalance, so a running worker given a killed one's partitions never
saw their uncommitted messages (tests/integration/test_derived_table.py has the whole story)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from triggerhub.bus.app import seek_to_committed
from triggerhub.bus.topics import ensure_topics
from triggerhub.config import KafkaConfig

pytestmark = [pytest.mark.kafka]

PARTITIONS = 3
MESSAGES = 3  # per partition
WAIT_S = 30.0


@pytest.fixture
async def topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh topic holding MESSAGES messages in each partition; deleted afterwards."""
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=f"th-test-{secrets.token_hex(4)}.",
                         partitions=PARTITIONS)
    name = f"{config.topic_prefix}derive-keys"
    await ensure_topics(config, [name])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(PARTITIONS):
            for n in range(MESSAGES):
                await producer.send_and_wait(name, f"{partition}/{n}".encode(), partition=partition)
    finally:
        await producer.stop()
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.fixture
async def consumer(kafka_bootstrap: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group member holding every partition, past every message: partition 0 committed at 2,
    partition 1 at 0, partition 2 never."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{topic}-group", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.commit({tps[0]: OffsetAndMetadata(2, ""), tps[1]: OffsetAndMetadata(0, "")})
        async with asyncio.timeout(WAIT_S):  # partition 0 starts at its committed 2, the others at 0
            while [await consumer.position(tp) for tp in tps] != [MESSAGES] * PARTITIONS:
                await consumer.getmany(timeout_ms=500)
        yield consumer
    finally:
        await consumer.stop()


async def positions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    return [await consumer.position(TopicPartition(topic, p)) for p in range(PARTITIONS)]


async def test_aiokafka_alone_leaves_uncommitted_partitions_where_the_fetcher_got_to(consumer, topic) -> None:
    """The cause, kept visible: if aiokafka changes this, bus/app.py's repair can go."""
    committed = await consumer.seek_to_committed()
    assert [committed[TopicPartition(topic, p)] for p in range(PARTITIONS)] == [2, 0, None]
    assert await positions(consumer, topic) == [2, MESSAGES, MESSAGES]


async def test_uncommitted_and_zero_partitions_are_read_again_from_their_beginning(consumer, topic) -> None:
    committed = await seek_to_committed(consumer, streams=lambda tp: True)
    assert [committed[TopicPartition(topic, p)] for p in range(PARTITIONS)] == [2, 0, None]
    assert await positions(consumer, topic) == [2, 0, 0]
    again = [(r.partition, r.value) for records in (await consumer.getmany(timeout_ms=5000)).values() for r in records]
    assert sorted(again) == sorted([(0, b"0/2")] + [(p, f"{p}/{n}".encode()) for p in (1, 2) for n in range(MESSAGES)])


async def test_partitions_that_are_no_stream_are_left_to_the_table_recovery(consumer, topic) -> None:
    await seek_to_committed(consumer, streams=lambda tp: tp.partition != 2)
    assert await positions(consumer, topic) == [2, 0, MESSAGES]
