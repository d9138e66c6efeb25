"""How accepted invocations get run: the Dispatcher seam and its embedded implementation.

Embedded mode (`LocalDispatcher`): the store is the queue. `submit` commits the acceptance, then
runs each invocation to its record (`recording.run_to_record`) in a task of the dispatcher's
TaskGroup; on start it re-runs what was accepted but never recorded. A blocking caller whose
record cannot be stored is answered 503 (Unavailable) once a round of retries is exhausted.
Distributed mode plugs in a Kafka-backed dispatcher instead.

The Engine is given its dispatcher when it is built and hands it what to run when it starts
(`running(execute=..., finished=...)`): the mode lives behind this seam, nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.engine.recording import Execute, RecordNotStored, RecordRetry, run_to_record
from triggerhub.errors import TriggerhubError, Unavailable
from triggerhub.model import Activation, Invocation, TriggerEvent
from triggerhub.store.base import Acceptance, Store

log = logging.getLogger(__name__)

Finished = Callable[[Invocation], None]
"""Called once per invocation when the dispatcher is done with it: the engine gives back the
concurrency slot (and feed admission slot) it took when it admitted the invocation.

The one policy: a slot is held while the process that admitted the invocation still answers for
it. So the two dispatchers call it at different moments, on purpose:
- `LocalDispatcher` runs what it admits: once the activation's record is stored (or nothing will
  run). The limit is the number of actions running at once.
- `KafkaDispatcher` (distributed) runs nothing, and no process tells it when a non-blocking
  activation ends (invokers answer only blocking callers, on the controller's completions topic):
  once Kafka holds the invocation. A blocking invoke keeps its slot until its completion arrives
  or the wait ends. How many actions run at once is bounded by the invokers
  (TRIGGERHUB_INVOKER_CONCURRENCY each). The README ("Concurrency slots in the two modes") says so.
"""
MatchHere = Callable[[], Awaitable[bool]]


class DispatcherStatistics(Protocol):
    """A snapshot of a dispatcher's counters (each dispatcher has its own frozen dataclass)."""

    def to_json(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class LocalStatistics:
    running: int  # invocations running in this process

    def to_json(self) -> dict[str, int]:
        return {"running": self.running}


class Dispatcher(Protocol):
    def running(self, *, execute: Execute, finished: Finished) -> contextlib.AbstractAsyncContextManager[None]:
        """Serve until the block ends: accepted invocations run with `execute` (if they run in
        this process), and `finished(invocation)` is called once for each handed over."""

    async def fire(self, event: TriggerEvent, match_here: MatchHere, *, key: str) -> bool:
        """A fire through the API: match it in this process (`match_here()`) or hand the event to
        where rules are matched, under `key` (events of one key are matched in order:
        engine/ordering.py). False when the event was a duplicate."""

    async def submit(self, acceptance: Acceptance, invocations: Sequence[Invocation], *,
                     confirmations: list[Awaitable[None]] | None = None) -> bool:
        """Make `acceptance` durable, then see that each invocation runs and ends in exactly one
        record. False when the acceptance's event was a duplicate (nothing new to run).

        With a `confirmations` list, return once the hand-over is queued and append what, awaited,
        confirms it; the caller awaits them before it acknowledges its own input. A dispatcher
        whose hand-over is durable on return appends nothing."""

    async def run_blocking(self, invocation: Invocation, wait_ms: int) -> Activation | None:
        """Run now and wait up to `wait_ms` for the record. None when the wait expired: the
        invocation is then durable and still completes."""

    def statistics(self) -> DispatcherStatistics: ...


def _not_started(invocation: Invocation) -> None:
    raise TriggerhubError("the dispatcher is not running; use `async with engine:`")


async def _not_running(invocation: Invocation) -> Activation:
    raise TriggerhubError("the dispatcher is not running; use `async with engine:`")


class LocalDispatcher:
    def __init__(self, store: Store, *, record_retry: RecordRetry = RecordRetry(), clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._execute: Execute = _not_running
        self._finished: Finished = _not_started
        self._record_retry = record_retry
        self._clock = clock  # paces the retried record writes
        self._tasks: asyncio.TaskGroup | None = None
        self._running: dict[str, asyncio.Task[Activation | None]] = {}
        # Blocking callers by activation id: answered by the run itself as it ends (the record, or
        # None when it failed), by `_surface` when its record could not be stored, or when the wait
        # ends. One hop from the run to its caller, where waiting on the task took two loop turns.
        self._waiting: dict[str, asyncio.Future[Activation | RecordNotStored | None | _Expired]] = {}

    @contextlib.asynccontextmanager
    async def running(self, *, execute: Execute, finished: Finished) -> AsyncIterator[None]:
        """Runs what was accepted and never recorded first, then every submitted invocation."""
        self._execute, self._finished = execute, finished
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                try:
                    recovered = await self._store.list_pending()
                    for invocation in recovered:
                        self._start(invocation)
                    if recovered:
                        log.info("recovered %d accepted activations without a record", len(recovered))
                    yield
                finally:
                    for task in list(self._running.values()):
                        task.cancel()
        finally:
            self._tasks = None

    def statistics(self) -> LocalStatistics:
        return LocalStatistics(running=len(self._running))

    async def fire(self, event: TriggerEvent, match_here: MatchHere, *, key: str) -> bool:
        return await match_here()  # one process: fires are matched as they come, in request order

    async def submit(self, acceptance: Acceptance, invocations: Sequence[Invocation], *,
                     confirmations: list[Awaitable[None]] | None = None) -> bool:
        if not await self._store.accept(acceptance):
            return False
        for invocation in invocations:
            self._start(invocation)
        return True

    async def run_blocking(self, invocation: Invocation, wait_ms: int) -> Activation | None:
        loop = asyncio.get_running_loop()
        activation_id = invocation.activation_id
        self._start(invocation)  # its first step comes after this caller's next await
        answer = self._waiting.get(activation_id)
        if answer is None:
            answer = self._waiting[activation_id] = loop.create_future()
        # The run goes on when the wait ends (or the caller goes away): it is a task of its own.
        timer = loop.call_later(wait_ms / 1000, _expire, answer)
        try:
            outcome = await answer
        finally:
            timer.cancel()
            if self._waiting.get(activation_id) is answer:
                del self._waiting[activation_id]
        if isinstance(outcome, RecordNotStored):
            raise Unavailable(str(outcome))
        if not isinstance(outcome, _Expired):
            return outcome
        # The caller now holds an id it was promised: make it durable before answering.
        await self._store.accept(Acceptance(invocations=[invocation]))
        return None

    def _start(self, invocation: Invocation) -> asyncio.Task[Activation | None]:
        if self._tasks is None:
            raise TriggerhubError("the dispatcher is not running; use `async with engine:`")
        existing = self._running.get(invocation.activation_id)
        if existing is not None:
            return existing
        task = self._tasks.create_task(self._run(invocation))
        self._running[invocation.activation_id] = task
        return task

    async def _run(self, invocation: Invocation) -> Activation | None:
        record: Activation | None = None
        try:
            record = await run_to_record(invocation, execute=self._execute, store=self._store, where="hub",
                                         retry=self._record_retry, surface=self._surface, clock=self._clock)
            return record
        except asyncio.CancelledError:
            waiter = self._waiting.get(invocation.activation_id)
            if waiter is not None:
                waiter.cancel()
            raise
        except Exception:  # one failed activation must not tear down the TaskGroup; its pending row stays
            log.exception("activation %s of %s failed to complete; it stays pending",
                          invocation.activation_id, invocation.path_annotation)
            return None
        finally:
            self._running.pop(invocation.activation_id, None)
            self._finished(invocation)
            _answer(self._waiting.get(invocation.activation_id), record)

    def _surface(self, error: RecordNotStored) -> None:
        _answer(self._waiting.get(error.record.activation_id), error)


class _Expired:
    """A blocking caller's wait ended before its activation did."""


_EXPIRED = _Expired()


def _expire(answer: asyncio.Future[Activation | RecordNotStored | None | _Expired]) -> None:
    _answer(answer, _EXPIRED)


def _answer(waiter: asyncio.Future[Activation | RecordNotStored | None | _Expired] | None,
            outcome: Activation | RecordNotStored | None | _Expired) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(outcome)
