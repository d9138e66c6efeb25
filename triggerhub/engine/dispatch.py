"""How accepted invocations get run: the Dispatcher seam and its embedded implementation.

Embedded mode (`LocalDispatcher`): the store is the queue. `submit` commits the acceptance, then
runs each invocation in a task of the dispatcher's TaskGroup; on start it re-runs what was
accepted but never recorded. Distributed mode plugs in a Kafka-backed dispatcher instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from triggerhub.errors import TriggerhubError
from triggerhub.model import Activation, Invocation
from triggerhub.store.base import Acceptance, Store

log = logging.getLogger(__name__)

Execute = Callable[[Invocation], Awaitable[Activation]]
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
    def __init__(self, store: Store, execute: Execute, finished: Finished) -> None:
        self._store = store
        self._execute = execute
        self._finished = finished
        self._tasks: asyncio.TaskGroup | None = None
        self._running: dict[str, asyncio.Task[Activation | None]] = {}

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
        try:
            async with asyncio.timeout(wait_ms / 1000):
                return await asyncio.shield(task)
        except TimeoutError:
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
            record = await self._execute(invocation)
            if await self._store.complete(record):
                log.info("activation %s of %s ended: %s", record.activation_id, invocation.path_annotation,
                         record.response.status_code.text)
            return record
        except asyncio.CancelledError:
            raise
        except Exception:  # one failed activation must not tear down the TaskGroup; its pending row stays
            log.exception("activation %s of %s failed to complete; it stays pending",
                          invocation.activation_id, invocation.path_annotation)
            return None
        finally:
            self._running.pop(invocation.activation_id, None)
            self._finished(invocation)
