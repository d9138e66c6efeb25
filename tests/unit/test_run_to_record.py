"""run_to_record's policy for a failing store write, with a store fake at the Store seam: the
write is retried with backoff, an exhausted round is surfaced (ERROR line, 503 to a blocking
caller), the action never runs twice, and the activation ends in its one record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from triggerhub.engine.dispatch import LocalDispatcher, LocalStatistics
from triggerhub.engine.recording import RecordNotStored, RecordRetry, run_to_record
from triggerhub.errors import StoreError, Unavailable
from triggerhub.model import Action, Activation, ActivationResponse, Exec, Invocation
from triggerhub.store.base import Acceptance

RETRY = RecordRetry(attempts=3, first_pause_s=0.1, max_pause_s=0.3)
INVOCATION = Invocation("a1", Action("guest", "hello", Exec("python:3.11", "")), {}, "guest", "guest", 1_000,
                        path_annotation="guest/hello")
RECORD = Activation("guest", "hello", "guest", "a1", 1_000, 1_005, ActivationResponse.ok({"ok": True}))
ENDED = "activation a1 of guest/hello ended on hub: success"
NOT_STORED = ("activation a1 of guest/hello ran (success) but its record could not be stored after 3 attempts "
              "(disk full); it is stored as soon as the store answers: GET /api/v1/namespaces/_/activations/a1")


class FailingStore:
    """The Store methods run_to_record and LocalDispatcher use; `complete` raises StoreError while
    `fails(attempt)` says so (attempts count from 1)."""

    def __init__(self, fails: Callable[[int], bool]) -> None:
        self.fails = fails
        self.attempts = 0
        self.records: dict[str, Activation] = {}
        self.accepted: list[Acceptance] = []

    async def complete(self, activation: Activation) -> bool:
        self.attempts += 1
        if self.fails(self.attempts):
            raise StoreError("disk full")
        if activation.activation_id in self.records:
            return False
        self.records[activation.activation_id] = activation
        return True

    async def get_activation(self, namespace: str, activation_id: str) -> Activation | None:
        return self.records.get(activation_id)

    async def accept(self, acceptance: Acceptance) -> bool:
        self.accepted.append(acceptance)
        return True

    async def list_pending(self) -> list[Invocation]:
        return []


class Runs:
    """The Execute callable: counts runs, answers RECORD."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, invocation: Invocation) -> Activation:
        self.count += 1
        return RECORD


class Pauses:
    """The injected clock's sleep (all run_to_record uses of a Clock): records each pause and only
    yields to the loop."""

    def __init__(self) -> None:
        self.taken_s: list[float] = []

    async def sleep(self, pause_s: float) -> None:
        self.taken_s.append(pause_s)
        await asyncio.sleep(0)


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == "triggerhub.engine.recording"]


async def test_a_write_that_fails_within_a_round_is_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store, runs, pauses, surfaced = FailingStore(lambda n: n <= 2), Runs(), Pauses(), []
    record = await run_to_record(INVOCATION, execute=runs, store=store, where="hub",  # type: ignore[arg-type]
                                 retry=RETRY, surface=surfaced.append, clock=pauses)
    assert record == RECORD and store.records == {"a1": RECORD}
    assert (runs.count, store.attempts, pauses.taken_s, surfaced) == (1, 3, [0.1, 0.2], [])
    assert lines(caplog, logging.DEBUG) == [ENDED]
    assert lines(caplog, logging.ERROR) == []


async def test_an_exhausted_round_is_surfaced_and_the_record_still_stored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store, runs, pauses, surfaced = FailingStore(lambda n: n <= 7), Runs(), Pauses(), []
    record = await run_to_record(INVOCATION, execute=runs, store=store, where="hub",  # type: ignore[arg-type]
                                 retry=RETRY, surface=surfaced.append, clock=pauses)
    assert record == RECORD and store.records == {"a1": RECORD}
    assert (runs.count, store.attempts) == (1, 8)  # the action ran once; only the write was retried
    assert pauses.taken_s == [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1]  # two exhausted rounds, each then the longest pause
    assert [str(error) for error in surfaced] == [NOT_STORED, NOT_STORED]
    assert all(isinstance(error, RecordNotStored) and error.record == RECORD for error in surfaced)
    assert lines(caplog, logging.ERROR) == [NOT_STORED, NOT_STORED]
    assert lines(caplog, logging.DEBUG) == [ENDED]


async def test_a_record_stored_before_is_returned_not_stored_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first = Activation("guest", "hello", "guest", "a1", 900, 950, ActivationResponse.ok({"first": True}))
    store, runs = FailingStore(lambda n: False), Runs()
    store.records["a1"] = first
    record = await run_to_record(INVOCATION, execute=runs, store=store, where="invoker0",  # type: ignore[arg-type]
                                 retry=RETRY, clock=Pauses())
    assert record == first and store.records == {"a1": first}
    assert lines(caplog, logging.DEBUG) == [] and lines(caplog, logging.INFO) == []


@pytest.fixture
async def dispatcher_on() -> AsyncIterator[Callable[[FailingStore], Awaitable[LocalDispatcher]]]:
    """Starts LocalDispatchers over a store fake; stops them after the test."""
    async with contextlib.AsyncExitStack() as running:
        async def start(store: FailingStore) -> LocalDispatcher:
            dispatcher = LocalDispatcher(store, record_retry=RETRY, clock=Pauses())  # type: ignore[arg-type]
            await running.enter_async_context(dispatcher.running(execute=Runs(), finished=lambda invocation: None))
            return dispatcher

        yield start


async def test_a_blocking_caller_gets_503_then_the_record_is_stored(
        dispatcher_on: Callable[[FailingStore], Awaitable[LocalDispatcher]]) -> None:
    gate = asyncio.Event()  # the store fails until the test has seen the 503
    store = FailingStore(lambda n: not gate.is_set())
    dispatcher = await dispatcher_on(store)
    with pytest.raises(Unavailable) as caught:
        await dispatcher.run_blocking(INVOCATION, wait_ms=10_000)
    assert (caught.value.status, caught.value.message) == (503, NOT_STORED)
    gate.set()
    async with asyncio.timeout(5):  # the run ends once its record is stored
        while dispatcher.statistics() != LocalStatistics(running=0):
            await asyncio.sleep(0)
    assert store.records == {"a1": RECORD}


async def test_a_blocking_caller_gets_the_record_when_a_retry_succeeds(
        dispatcher_on: Callable[[FailingStore], Awaitable[LocalDispatcher]]) -> None:
    store = FailingStore(lambda n: n == 1)
    dispatcher = await dispatcher_on(store)
    assert await dispatcher.run_blocking(INVOCATION, wait_ms=10_000) == RECORD
    assert store.records == {"a1": RECORD}


async def test_a_blocking_caller_whose_wait_ends_first_holds_a_durable_id_and_the_run_goes_on() -> None:
    store, gate = FailingStore(lambda n: False), asyncio.Event()

    async def run_after_gate(invocation: Invocation) -> Activation:
        await gate.wait()
        return RECORD

    dispatcher = LocalDispatcher(store, record_retry=RETRY, clock=Pauses())  # type: ignore[arg-type]
    async with dispatcher.running(execute=run_after_gate, finished=lambda invocation: None):
        assert await dispatcher.run_blocking(INVOCATION, wait_ms=20) is None
        assert store.accepted == [Acceptance(invocations=[INVOCATION])]  # pending before the caller hears
        assert (dispatcher.statistics(), store.records) == (LocalStatistics(running=1), {})
        gate.set()
        async with asyncio.timeout(5):
            while dispatcher.statistics() != LocalStatistics(running=0):
                await asyncio.sleep(0)
    assert store.records == {"a1": RECORD}


async def test_a_blocking_caller_is_answered_in_the_loop_turn_after_the_record_is_stored(
        dispatcher_on: Callable[[FailingStore], Awaitable[LocalDispatcher]]) -> None:
    # The run answers its caller itself: one hop, where waiting on the run's task took two turns.
    store = FailingStore(lambda n: False)
    dispatcher = await dispatcher_on(store)
    caller = asyncio.create_task(dispatcher.run_blocking(INVOCATION, wait_ms=10_000))
    while not store.records:
        await asyncio.sleep(0)
    assert not caller.done()
    await asyncio.sleep(0)
    assert caller.done() and caller.result() == RECORD
