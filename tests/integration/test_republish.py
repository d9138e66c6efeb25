"""No stuck events, against the real Kafka broker: an invocation the store accepted whose publish
failed (a seam around the real producer fails the first N publishes), or that was pending when a
process started, is published again by the RepublishSweep and runs exactly once.

An invoker loop (the real InvokerService on a real consumer) runs what reaches the topic; "once"
is checked after quiescence: no new copy for QUIET_S, nothing pending, nothing left to republish.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from tests.integration.test_distributed_dispatch import fired, invocation, record_of
from tests.integration.test_feed_kafka import make_topic
from tests.plugins.waiting import wait_quiet
from triggerhub.bus.producer import KafkaPublisher
from triggerhub.bus.topics import Topics
from triggerhub.config import KafkaConfig
from triggerhub.engine.distributed import InvokerService, KafkaDispatcher
from triggerhub.engine.republish import RepublishSweep, SweepStatistics
from triggerhub.errors import BusError
from triggerhub.model import Activation, Invocation, now_ms
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

pytestmark = pytest.mark.kafka
QUIET_S = 1.0
SWEEP_S = 0.05


class FailingPublisher:
    """Publisher seam around the real producer: the first `failures` publishes raise BusError."""

    def __init__(self, real: KafkaPublisher, failures: int) -> None:
        self._real = real
        self.failures = failures

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        await (await self.enqueue(topic, key, value))

    async def enqueue(self, topic: str, key: str, value: bytes) -> Awaitable[None]:
        if self.failures > 0:
            self.failures -= 1
            raise BusError(f"publishing to topic {topic!r} (key {key!r}) failed: the test's seam refused it")
        return await self._real.enqueue(topic, key, value)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def topics(kafka_bootstrap: str) -> Topics:
    prefixed = Topics(f"rp{uuid.uuid4().hex[:8]}.")
    await make_topic(kafka_bootstrap, prefixed.invocations, 2)
    return prefixed


class Invoker:
    """The real InvokerService fed by a real consumer of the invocations topic; counts copies and runs."""

    def __init__(self, store: SqlStore, publisher: KafkaPublisher, topic: str) -> None:
        self.copies: list[str] = []
        self.runs: list[str] = []
        self.service = InvokerService("invoker0", store, self._execute, publisher, topic)

    async def _execute(self, item: Invocation) -> Activation:
        self.runs.append(item.activation_id)
        return record_of(item, {"ran": len(self.runs)})

    async def consume(self, bootstrap: str, topic: str) -> None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id=f"g-{uuid.uuid4().hex[:8]}")
        await consumer.start()
        try:
            async for message in consumer:
                self.copies.append(message.key.decode())
                await self.service.handle(message.key.decode(), message.value)
        finally:
            await consumer.stop()


async def settled(store: SqlStore, invoker: Invoker, dispatcher: KafkaDispatcher) -> None:
    async def observe() -> tuple[int, int, int, int]:
        return (len(invoker.copies), len(invoker.runs), len(await store.list_pending()), len(dispatcher.unpublished()))
    await wait_quiet(observe, lambda seen: seen[2] == 0 and seen[3] == 0, quiet_s=QUIET_S, timeout_s=30)


async def test_a_failed_publish_is_republished_and_runs_exactly_once(
        store: SqlStore, topics: Topics, kafka_bootstrap: str) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topics.prefix)
    item = invocation("f" * 32)
    async with KafkaPublisher(config, client_id="test-republish") as real:
        failing = FailingPublisher(real, failures=3)  # the submit's publish and the sweep's next two tries
        dispatcher = KafkaDispatcher(store, failing, topics)
        invoker = Invoker(store, real, topics.invocations)
        sweep = RepublishSweep(dispatcher, store, started_ms=0, where="test", interval_s=SWEEP_S)
        acceptance = Acceptance(event=fired("e-failed"), invocations=[item])
        async with dispatcher.running(execute=lambda i: asyncio.sleep(0, record_of(i, {})), finished=lambda i: None):
            with pytest.raises(BusError):
                await dispatcher.submit(acceptance, [item])
            assert [i.activation_id for i in await store.list_pending()] == [item.activation_id]  # stored...
            assert dispatcher.unpublished() == [item]  # ...and not in Kafka
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(invoker.consume(kafka_bootstrap, topics.invocations)), tg.create_task(sweep.run())]
                await settled(store, invoker, dispatcher)
                for task in tasks:
                    task.cancel()
    assert (invoker.copies, invoker.runs) == ([item.activation_id], [item.activation_id])
    assert sweep.statistics() == SweepStatistics(republished=1, failed=2)
    record = await store.get_activation("guest", item.activation_id)
    assert record is not None and record.response.result == {"ran": 1}


async def test_pending_from_before_a_start_is_published_once_and_a_second_copy_runs_nothing(
        store: SqlStore, topics: Topics, kafka_bootstrap: str) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topics.prefix)
    lost, delivered = invocation("a" * 32), invocation("b" * 32)
    await store.accept(Acceptance(event=fired("e-lost"), invocations=[lost]))  # killed before publishing
    async with KafkaPublisher(config, client_id="test-republish") as real:
        before = KafkaDispatcher(store, real, topics)
        async with before.running(execute=lambda i: asyncio.sleep(0, record_of(i, {})), finished=lambda i: None):
            assert await before.submit(Acceptance(event=fired("e-ok"), invocations=[delivered]), [delivered])
        restarted = KafkaDispatcher(store, real, topics)
        sweep = RepublishSweep(restarted, store, started_ms=now_ms() + 1, where="test", interval_s=SWEEP_S)
        invoker = Invoker(store, real, topics.invocations)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(sweep.run()), tg.create_task(invoker.consume(kafka_bootstrap, topics.invocations))]
            await settled(store, invoker, restarted)
            for task in tasks:
                task.cancel()
    # The delivered one reached Kafka twice (its publish, then the start-up pass): it ran once.
    assert sorted(invoker.copies) == sorted([lost.activation_id, delivered.activation_id, delivered.activation_id])
    assert sorted(invoker.runs) == sorted([lost.activation_id, delivered.activation_id])
    assert invoker.service.statistics().skipped == 1
    assert sweep.statistics() == SweepStatistics(republished=2, failed=0)
