"""How accepted invocations get run: the Dispatcher seam and its embedded implementation.

Embedded mode (`LocalDispatcher`): the store is the queue. `submit` commits the acceptance, then
runs each invocation to its record (`recording.run_to_record`) in a task of the dispatcher's
TaskGroup; on start it re-runs what was accepted but never recorded. A blocking caller whose
record cannot be stored is answered 503 (Unavailable) once a round of retries is exhausted.
Distributed mode plugs in a Kafka-backed dispatcher instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from triggerhub.engine.recording import Execute, RecordNotStored, RecordRetry, Sleep, run_to_record
from triggerhub.errors import TriggerhubError, Unavailable
from triggerhub.model import Activation, Invocation
from triggerhub.store.base import Acceptance, Store

log = logging.getLogger(__name__)

Finished = Callable[[Invocation], None]


class Dispatcher(Protocol):
    async def __aenter__(self) -> Dispatcher: ...
    async def __aexit__(self, *exc_info: Any) -> None: ...

    async def submit(self, acceptance: Acceptance, invocations: Sequence[Invocation]) -> bool:
        """Make `acceptance` durable, then see that each invocation runs and ends in exactly one
        record. False when the acceptance's event was a duplicate (nothing new to run)."""

    async def run_blocking(self, invocation: Invocation, wait_ms: int) -> Activation | None:
        """Run now and wait up to `wait_ms` for the record. None when the wait expired: the
        invocation is then durable and still completes."""

    def statistics(self) -> dict[str, int]: ...


class LocalDispatcher:
    def __init__(self, store: Store, execute: Execute, finished: Finished, *,
                 record_retry: RecordRetry = RecordRetry(), sleep: Sleep = asyncio.sleep) -> None:
        self._store = store
        self._execute = execute
        self._finished = finished
        self._record_retry = record_retry
        self._sleep = sleep
        self._tasks: asyncio.TaskGroup | None = None
        self._running: dict[str, asyncio.Task[Activation | None]] = {}
        self._unstored: dict[str, asyncio.Future[RecordNotStored]] = {}  # blocking callers, told of failed writes

    async def __aenter__(self) -> LocalDispatcher:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        recovered = await self._store.list_pending()
        for invocation in recovered:
            self._start(invocation)
        if recovered:
            log.info("recovered %d accepted activations without a record", len(recovered))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._tasks is None:
            return
        for task in list(self._running.values()):
            task.cancel()
        await self._tasks.__aexit__(*exc_info)
        self._tasks = None

    def statistics(self) -> dict[str, int]:
        return {"running": len(self._running)}

    async def submit(self, acceptance: Acceptance, invocations: Sequence[Invocation]) -> bool:
        if not await self._store.accept(acceptance):
            return False
        for invocation in invocations:
            self._start(invocation)
        return True

    async def run_blocking(self, invocation: Invocation, wait_ms: int) -> Activation | None:
        task = self._start(invocation)
        unstored = self._unstored.setdefault(invocation.activation_id, asyncio.get_running_loop().create_future())
        try:
            # asyncio.wait leaves the task running when the wait ends (like shield did)
            done, _ = await asyncio.wait((task, unstored), timeout=wait_ms / 1000,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._unstored.get(invocation.activation_id) is unstored:
                del self._unstored[invocation.activation_id]
        if task in done:
            return task.result()
        if unstored in done:
            raise Unavailable(str(unstored.result()))
        # The caller now holds an id it was promised: make it durable before answering.
        await self._store.accept(Acceptance(invocations=[invocation]))
        return None

    def recovered_ids(self) -> list[str]:
        return list(self._running)

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
        try:
            return await run_to_record(invocation, execute=self._execute, store=self._store, where="hub",
                                       retry=self._record_retry, surface=self._surface, sleep=self._sleep)
        except asyncio.CancelledError:
            raise
        except Exception:  # one failed activation must not tear down the TaskGroup; its pending row stays
            log.exception("activation %s of %s failed to complete; it stays pending",
                          invocation.activation_id, invocation.path_annotation)
            return None
        finally:
            self._running.pop(invocation.activation_id, None)
            self._finished(invocation)

    def _surface(self, error: RecordNotStored) -> None:
        waiter = self._unstored.get(error.record.activation_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(error)
