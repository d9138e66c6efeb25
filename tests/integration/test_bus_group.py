"""The consumer-group member of invokers and feeds (bus/group.py) on the real broker: messages run
concurrently, a partition's offset is committed only up to its first unhandled message, and a
member that joins later starts after what was committed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from triggerhub.bus.group import GroupMember
from triggerhub.bus.topics import delete_topics, ensure_topics
from triggerhub.config import KafkaConfig

pytestmark = [pytest.mark.kafka]

SESSION_TIMEOUT_MS = 6000  # the broker's group.min.session.timeout.ms
WAIT_S = 60.0


@pytest.fixture
async def config(kafka_bootstrap: str) -> AsyncIterator[KafkaConfig]:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=f"th-test-{secrets.token_hex(4)}.", partitions=2,
                         session_timeout_ms=SESSION_TIMEOUT_MS)
    yield config
    await delete_topics(config, prefix=config.topic_prefix)


@pytest.fixture
async def admin(config: KafkaConfig) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap)
    await client.start()
    yield client
    await client.close()


async def produce(config: KafkaConfig, topic: str, count: int, *, partition: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, str(n).encode(), key=f"k{n}".encode(), partition=partition)
    finally:
        await producer.stop()


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    offsets = await admin.list_consumer_group_offsets(group, partitions=[TopicPartition(topic, 0),
                                                                          TopicPartition(topic, 1)])
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def test_offsets_are_committed_only_below_the_first_unhandled_message(
        config: KafkaConfig, admin: AIOKafkaAdminClient) -> None:
    topic, group = f"{config.topic_prefix}work", f"{config.topic_prefix}members"
    await ensure_topics(config, [topic])
    await produce(config, topic, 20, partition=0)
    handled: list[str] = []
    running_at_once = 0
    most_at_once = 0
    gate = asyncio.Event()

    async def handler(key: str, value: bytes) -> None:
        nonlocal running_at_once, most_at_once
        running_at_once += 1
        most_at_once = max(most_at_once, running_at_once)
        if value == b"5":
            await gate.wait()
        await asyncio.sleep(0)
        running_at_once -= 1
        handled.append(value.decode())

    member = GroupMember(config, group, topic, handler, concurrency=8, client_id="m1")
    async with member.running(join_timeout_s=WAIT_S):
        async with asyncio.timeout(WAIT_S):
            while len(handled) < 19:  # every message but offset 5
                await asyncio.sleep(0.05)
            while (await committed(admin, group, topic)).get(0) != 5:
                await asyncio.sleep(0.1)
        assert "5" not in handled
        assert most_at_once > 1
        gate.set()
        async with asyncio.timeout(WAIT_S):
            while (await committed(admin, group, topic)).get(0) != 20:
                await asyncio.sleep(0.1)
    assert sorted(handled, key=int) == [str(n) for n in range(20)]

    # A later member of the group starts after the committed offsets: only new messages reach it.
    await produce(config, topic, 3, partition=1)
    later: list[str] = []

    async def record(key: str, value: bytes) -> None:
        later.append(value.decode())

    async with GroupMember(config, group, topic, record, concurrency=8, client_id="m2").running(join_timeout_s=WAIT_S):
        async with asyncio.timeout(WAIT_S):
            while (await committed(admin, group, topic)) != {0: 20, 1: 3}:
                await asyncio.sleep(0.1)
    assert sorted(later) == ["0", "1", "2"]


async def test_a_rebalance_waits_for_the_messages_in_flight_and_hands_over_after_them(
        config: KafkaConfig, admin: AIOKafkaAdminClient) -> None:
    topic, group = f"{config.topic_prefix}work", f"{config.topic_prefix}members"
    await ensure_topics(config, [topic])
    await produce(config, topic, 1, partition=0)
    await produce(config, topic, 1, partition=1)
    gate = asyncio.Event()
    first: list[str] = []
    second: list[str] = []

    async def slow(key: str, value: bytes) -> None:
        await gate.wait()
        first.append(value.decode())

    async def record(key: str, value: bytes) -> None:
        second.append(value.decode())

    member = GroupMember(config, group, topic, slow, concurrency=8, client_id="m1")
    async with member.running(join_timeout_s=WAIT_S):
        async with asyncio.timeout(WAIT_S):
            while member.statistics().running < 2:  # both messages are in the first member's hands
                await asyncio.sleep(0.05)
        joining = GroupMember(config, group, topic, record, concurrency=8, client_id="m2")
        async with contextlib.AsyncExitStack() as stack:
            entering = asyncio.create_task(stack.enter_async_context(joining.running(join_timeout_s=WAIT_S)))
            async with asyncio.timeout(WAIT_S):
                while member.assigned_partitions():  # the rebalance revoked them; the member waits
                    await asyncio.sleep(0.05)
            assert first == [] and second == []
            gate.set()
            await entering
            async with asyncio.timeout(WAIT_S):
                while member.assigned_partitions() + joining.assigned_partitions() != 2 \
                        or await committed(admin, group, topic) != {0: 1, 1: 1}:
                    await asyncio.sleep(0.1)
    assert sorted(first) == ["0", "0"]  # each partition's one message, handled by the member that had it
    assert second == []  # and not handed to the newcomer again
