"""The Kafka dispatcher and invoker loop at their seams: a real store, a fake Publisher.

The crash windows the process tests cannot hit on purpose: a worker dying after the store
accepted an event and before the invocations reached Kafka, and an invocation delivered twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from triggerhub.bus.topics import Topics
from triggerhub.engine.distributed import (
    InvokerStatistics,
    CompletionWaiter, InvokerService, KafkaDispatcher, WorkerService, completion_message, event_message,
    invocation_message, read_completion, read_invocation,
)
from triggerhub.errors import BusError
from triggerhub.model import (
    Action, Activation, ActivationResponse, Exec, FullyQualifiedName, Invocation, TriggerEvent,
)
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

TOPICS = Topics("t.")


class RecordingPublisher:
    """Publisher fake: keeps (topic, key, value); fails the first `failures` publishes."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self._failures = failures

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        await (await self.enqueue(topic, key, value))

    async def enqueue(self, topic: str, key: str, value: bytes) -> Awaitable[None]:
        failed = self._failures > 0
        self._failures -= failed
        if not failed:
            self.sent.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if failed:
            future.set_exception(BusError(f"publishing to topic {topic!r} (key {key!r}) failed: broker went away"))
        else:
            future.set_result(None)
        return future


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await store.open()
    yield store
    await store.close()


def invocation(activation_id: str) -> Invocation:
    action = Action("guest", "echo", Exec("python:3.11", "def main(a):\n    return a\n"))
    return Invocation(activation_id=activation_id, action=action, args={"n": 1}, namespace="guest",
                      subject="guest", accepted_ms=1_000, path_annotation="guest/echo")


def fired(event_id: str) -> TriggerEvent:
    return TriggerEvent(event_id, "/api/v1/namespaces/guest/triggers/tick", "org.openwhisk.trigger.fire",
                        FullyQualifiedName("guest", "tick"), {"n": 1}, "guest", 1_000)


async def never_runs(invocation: Invocation) -> Activation:
    raise AssertionError("a Kafka dispatcher runs nothing itself")


def record_of(item: Invocation, result: dict[str, int]) -> Activation:
    return Activation(namespace="guest", name="echo", subject="guest", activation_id=item.activation_id,
                      start_ms=2_000, end_ms=2_005, response=ActivationResponse.ok(result))


async def test_event_redelivered_after_a_crash_before_publishing_is_published(store) -> None:
    finished: list[str] = []
    crashing = KafkaDispatcher(store, RecordingPublisher(failures=1), TOPICS)
    acceptance = Acceptance(event=fired("e1"), invocations=[invocation("a" * 32)])
    async with crashing.running(execute=never_runs, finished=lambda i: finished.append(i.activation_id)):
        with pytest.raises(BusError):
            await crashing.submit(acceptance, acceptance.invocations)

    publisher = RecordingPublisher()
    restarted = KafkaDispatcher(store, publisher, TOPICS)
    async with restarted.running(execute=never_runs, finished=lambda i: finished.append(i.activation_id)):
        accepted = await restarted.submit(acceptance, acceptance.invocations)

    assert accepted is False  # the store has the event already: nothing written twice
    assert [(topic, key) for topic, key, _ in publisher.sent] == [("t.invocations", "a" * 32)]
    assert read_invocation(publisher.sent[0][2], "t.invocations") == (invocation("a" * 32), None)
    assert finished == []  # a duplicate's concurrency slot is given back by the engine
    assert [i.activation_id for i in await store.list_pending()] == ["a" * 32]


async def test_invocation_delivered_twice_runs_once_and_answers_both(store) -> None:
    runs: list[str] = []

    async def execute(item: Invocation) -> Activation:
        runs.append(item.activation_id)
        return record_of(item, {"run": len(runs)})

    publisher = RecordingPublisher()
    service = InvokerService("invoker0", store, execute, publisher, TOPICS.invocations)
    item = invocation("b" * 32)
    await store.accept(Acceptance(invocations=[item]))
    message = invocation_message(item, TOPICS.completed(0))

    await service.handle(item.activation_id, message)
    await service.handle(item.activation_id, message)

    assert runs == ["b" * 32]
    assert service.statistics() == InvokerStatistics(ran=1, skipped=1, running=0)
    answers = [read_completion(value, topic) for topic, _, value in publisher.sent]
    assert [a.response.result for a in answers] == [{"run": 1}, {"run": 1}]
    assert {topic for topic, _, _ in publisher.sent} == {"t.completed0"}
    assert await store.list_pending() == []


async def test_completion_wakes_the_blocking_caller(store) -> None:
    waiter = CompletionWaiter()
    item = invocation("c" * 32)
    future = waiter.expect(item.activation_id)
    await waiter.on_message("t.completed0", item.activation_id, completion_message(record_of(item, {"ok": 1})))
    await waiter.on_message("t.completed0", "x", b"not json")

    assert future.done() and future.result().response.result == {"ok": 1}


async def test_worker_batch_is_handled_again_when_a_queued_invocation_is_not_confirmed(store) -> None:
    publisher = RecordingPublisher(failures=1)
    dispatcher = KafkaDispatcher(store, publisher, TOPICS)
    by_event = {"e1": invocation("d" * 32), "e2": invocation("e" * 32)}

    async def emit(event: TriggerEvent, *, confirmations: list[Awaitable[None]] | None = None) -> bool:
        item = by_event[event.id]
        return await dispatcher.submit(Acceptance(event=event, invocations=[item]), [item], confirmations=confirmations)

    worker = WorkerService(emit, TOPICS.trigger_events)
    async with dispatcher.running(execute=never_runs, finished=lambda i: None):
        await worker.handle_batch([("/guest/tick", event_message(fired("e1"))), ("/guest/tick", event_message(fired("e2")))])

    assert [key for _, key, _ in publisher.sent] == ["e" * 32, "d" * 32, "e" * 32]
    assert worker.handled == 4
    assert await store.count_events() == 2


async def test_a_copy_of_a_recorded_invocation_drops_a_pending_row_left_beside_its_record(store) -> None:
    """A retry started a second time (kept again by a second settle of the attempt before it, which
    two invokers ran at once across a rebalance, or re-claimed after its claimer died) can be made
    pending again as its attempt's record commits: the copy then published finds the record, runs
    nothing, and drops that row, so no pending row waits forever."""
    item = invocation("f" * 32)
    await store.accept(Acceptance(invocations=[item]))
    assert await store.complete(record_of(item, {"run": 1}))
    await store.accept(Acceptance(invocations=[item]))  # the row the race leaves: pending beside a record
    assert [i.activation_id for i in await store.list_pending()] == ["f" * 32]
    service = InvokerService("invoker0", store, never_runs, RecordingPublisher(), TOPICS.invocations)

    await service.handle(item.activation_id, invocation_message(item, None))

    assert service.statistics() == InvokerStatistics(ran=0, skipped=1, running=0)
    assert await store.list_pending() == []
    assert await store.delete_pending(item.activation_id) is False
