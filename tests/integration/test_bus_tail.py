"""A Tail (bus/tail.py) on topics created a moment before, on the real broker: what a controller
does at its first start, with its completions and health topics. The broker's metadata shows a
new topic a little after CreateTopics returns; `ensure_topics` must wait for it, or the Tail is
handed no partitions and reads nothing, ever (blocking invokes answered 202, invokers never up)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from triggerhub.bus.tail import Tail
from triggerhub.bus.topics import Topics, ensure_topics
from triggerhub.config import KafkaConfig
from triggerhub.model import now_ms

pytestmark = [pytest.mark.kafka]

PARTITIONS = 4
ROUNDS = 2  # controllers started one after another, each on a fresh prefix
BUSY_TOPICS = 20  # created by "other hubs" meanwhile: the broker shows new topics later when busy
WAIT_S = 60.0


@pytest.fixture
async def config(kafka_bootstrap: str) -> AsyncIterator[KafkaConfig]:
    """A fresh prefix; every topic under it is deleted afterwards."""
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=f"th-test-{secrets.token_hex(4)}.",
                         partitions=PARTITIONS)
    yield config
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        ours = [topic for topic in await admin.list_topics() if topic.startswith(config.topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def controller_topics(config: KafkaConfig, prefix: str) -> list[str]:
    """The five topics a controller creates at its first start (cli/distributed.py)."""
    topics = Topics(prefix)
    return [topics.trigger_events, topics.invocations, topics.feed_invocations, topics.health,
            topics.completed(config.controller_id)]


async def tail_reads(config: KafkaConfig, counts: dict[str, int]) -> list[tuple[str, str, bytes]]:
    """What a Tail from now on of the topics `counts` names receives of one message published on each
    of their partitions (`counts` -> the partitions it reads, as a controller's Tails are given them)."""
    sent = [(topic, f"k{partition}", f"{topic}/{partition}".encode())
            for topic in sorted(counts) for partition in range(PARTITIONS)]
    received: list[tuple[str, str, bytes]] = []
    every = asyncio.Event()

    async def handler(topic: str, key: str, value: bytes) -> None:
        received.append((topic, key, value))
        if len(received) == len(sent):
            every.set()

    async with Tail(config, counts, handler, since_ms=now_ms()) as tail, asyncio.TaskGroup() as tasks:
        reading = tasks.create_task(tail.run())
        producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, acks="all")
        await producer.start()
        try:
            for topic, key, value in sent:
                await producer.send_and_wait(topic, value, key=key.encode(), partition=int(key.removeprefix("k")))
        finally:
            await producer.stop()
        async with asyncio.timeout(WAIT_S):
            await every.wait()
        reading.cancel()
    assert sorted(received) == sent
    return received


async def test_a_tail_on_topics_created_a_moment_before_reads_every_message_published_to_them(
        config: KafkaConfig) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap)
    await admin.start()
    try:
        for round_ in range(ROUNDS):
            names = controller_topics(config, f"{config.topic_prefix}r{round_}.")
            others = [NewTopic(f"{config.topic_prefix}other{round_}.{n}", PARTITIONS, 1) for n in range(BUSY_TOPICS)]
            _, counts = await asyncio.gather(admin.create_topics(others), ensure_topics(config, names))
            assert counts == {name: PARTITIONS for name in names}, f"round {round_}"
            completions, health = names[-1], names[-2]
            received = await tail_reads(config, {completions: counts[completions], health: counts[health]})
            assert len(received) == 2 * PARTITIONS
    finally:
        await admin.close()
