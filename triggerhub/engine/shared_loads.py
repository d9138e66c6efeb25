"""Concurrent cache misses of one key share one store read.

When a cached value expires, every task that asks for it before the new one is read would read
the store itself: a worker matching a batch of 256 events of one trigger would read the trigger,
its rules and its action 256 times each. `SharedLoads.load(key, read, keep)` runs `read()` once
for all the callers that miss the same key meanwhile; `keep(value)` fills the cache, unless
`drop()` was called while the read ran (a write or a revalidation made it stale: the callers
waiting still get its value, as they would have from their own reads started before the drop,
and the next miss reads again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedLoads(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    async def load(self, key: K, read: Callable[[], Awaitable[V]], keep: Callable[[V], None]) -> V:
        """`read()`'s value, from the read of `key` already running if there is one. A caller
        cancelled while it waits leaves the read running for the others."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._read(key, read, keep))
            task.add_done_callback(_retrieved)
            self._running[key] = task
        return await asyncio.shield(task)

    def drop(self, key: K | None = None) -> None:
        """The reads running for `key` (for every key: None) no longer fill the cache."""
        if key is None:
            self._running.clear()
        else:
            self._running.pop(key, None)

    async def _read(self, key: K, read: Callable[[], Awaitable[V]], keep: Callable[[V], None]) -> V:
        try:
            value = await read()
            if self._running.get(key) is asyncio.current_task():
                keep(value)
            return value
        finally:
            if self._running.get(key) is asyncio.current_task():
                del self._running[key]


def _retrieved(task: asyncio.Task[V]) -> None:
    """Marks a failure as seen: every waiter was cancelled, or it was re-raised to them already."""
    if not task.cancelled():
        task.exception()
