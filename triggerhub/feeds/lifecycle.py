"""The running skeleton every cursor feed shares, so an adapter module holds only its source.

`FeedTask` is one running feed's task in the hub's TaskGroup: started once, cancelled and awaited
by `stop()`. It stores events with the one retry rule (triggerhub/retry.py), and it applies the one
policy for an event the hub refuses for good (an `ApiError`): log it, tell the hub through
`on_failed` (the hub pauses the feed) and emit nothing after it, so the cursor stays before it.
`FeedTask.follow` is the read loop of a feed that holds a connection (PostgreSQL, SQLite): a lost
source is reopened after `retry_s`, for as long as the feed runs. `hand_over` moves an item from
a client library's thread onto the loop's bounded queue (watchdog, paho).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from triggerhub.clock import Clock
from triggerhub.errors import ApiError, FeedError
from triggerhub.model import FullyQualifiedName
from triggerhub.retry import retrying

T = TypeVar("T")
_HANDOFF_POLL_S = 0.1


class Session(Protocol):
    """A feed's open connection to its source, with whatever it reads it by (cursor, snapshot)."""

    async def close(self, *, lost: bool) -> None:
        """Release the connection; `lost`: it failed, so do not wait on it."""


S = TypeVar("S", bound=Session)


def ignore_failure(_reason: str) -> None:
    """The default `on_failed` of a feed built outside the hub (tests): nothing to pause."""


class FeedTask:
    """One running feed's task and its identity: `label` ("postgres feed /guest/t") starts every
    log line, `fqn` names the trigger in the events."""

    def __init__(self, adapter: str, *, trigger: str, tasks: asyncio.TaskGroup, clock: Clock,
                 on_failed: Callable[[str], None], logger: logging.Logger) -> None:
        self.trigger = trigger
        self.fqn = FullyQualifiedName.parse(trigger, "_")
        self.label = f"{adapter} feed {trigger}"
        self.clock = clock
        self._tasks = tasks
        self._on_failed = on_failed  # the hub refused an event for good: it pauses this feed
        self._log = logger
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self, run: Coroutine[Any, Any, None]) -> None:
        """Run `run` in the hub's TaskGroup until `stop()`."""
        self._task = self._tasks.create_task(run, name=self.label)
        await asyncio.sleep(0)  # let the task enter its try: cancelled before that, it would never close what it holds

    async def stop(self) -> bool:
        """Cancel the task and wait for it to end; idempotent. True when a task was running."""
        task, self._task = self._task, None
        if task is None:
            return False
        task.cancel()
        await asyncio.wait([task])
        return True

    async def store(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` (an emit or a cursor write); a store or bus outage is retried, so the source
        is not acknowledged and nothing is dropped."""
        return await retrying(f"{self.label} {what}", attempt, clock=self.clock, logger=self._log)

    def refused(self, exc: ApiError, what: str) -> None:
        """The hub refused `what` for good: the feed emits nothing more and the hub pauses it."""
        self._log.warning("%s stops: the hub refused %s (%s)", self.label, what, exc.message)
        self._on_failed(exc.message)

    async def follow(self, session: S | None, *, reopen: Callable[[], Awaitable[S]],
                     step: Callable[[S], Awaitable[None]], lost: tuple[type[Exception], ...],
                     where: str, retry_s: float) -> None:
        """Run `step(session)` (read what is new, emit it, wait for more) until cancelled. An error
        of `lost` or a FeedError closes the session and reopens it after `retry_s`; a change the
        hub refuses ends the loop (`refused`). The session is closed however the loop ends."""
        reconnect = lost + (FeedError,)
        try:
            while True:
                try:
                    if session is None:
                        session = await reopen()
                    await step(session)
                except reconnect as exc:
                    self._log.warning("%s lost %s (%s); reconnecting in %s s", self.label, where, exc, retry_s)
                    if session is not None:
                        await session.close(lost=True)
                        session = None
                    await self.clock.sleep(retry_s)
                except ApiError as exc:  # refused for good: the cursor stays before the change
                    self.refused(exc, "a change")
                    return
        finally:
            if session is not None:
                await session.close(lost=False)


@contextlib.asynccontextmanager
async def translated(errors: tuple[type[Exception], ...], *, failure: str) -> AsyncIterator[None]:
    """At the adapter edge: an error of the source's library (`errors`) becomes
    FeedError("<failure>: <error>")."""
    try:
        yield
    except errors as exc:
        raise FeedError(f"{failure}: {exc}") from exc


@contextlib.asynccontextmanager
async def closed_on_failure(close: Callable[[], Awaitable[None]], *, errors: tuple[type[Exception], ...],
                            failure: str) -> AsyncIterator[None]:
    """Around preparing a fresh connection: on any failure it is closed, and an error of `errors`
    is `translated`."""
    try:
        async with translated(errors, failure=failure):
            yield
    except BaseException:
        await close()
        raise


def hand_over(item: T, queue: asyncio.Queue[T], loop: asyncio.AbstractEventLoop, stopping: threading.Event) -> None:
    """On a client library's thread: put `item` on the loop's bounded queue, waiting while it is
    full (so the library stops reading its source), unless the feed is stopping (then the item is
    dropped unacknowledged and the source sends it again)."""
    handoff = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
    while not stopping.is_set():
        try:
            handoff.result(timeout=_HANDOFF_POLL_S)
            return
        except concurrent.futures.TimeoutError:
            continue
    handoff.cancel()
