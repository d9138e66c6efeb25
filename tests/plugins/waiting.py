"""Waiting in tests, in one place: for a condition (`wait_until`), for activation records through
the REST API (`wait_record`, `wait_records`), and for quiescence (`wait_quiet`), which is how a
test proves that nothing was doubled: never after a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class RestClient(Protocol):
    """HubClient and the distributed ApiClient: `call` answers (status, decoded JSON body)."""

    async def call(self, method: str, path: str, body: Any = None, **query: Any) -> tuple[int, Any]: ...


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0, *, interval_s: float = 0.01) -> None:
    """Return once `predicate()` holds; TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(interval_s)


async def wait_record(client: RestClient, activation_id: str, timeout_s: float = 20.0, *,
                      interval_s: float = 0.05) -> Any:
    """The activation record `activation_id`, once it exists (404 until then; any other status fails)."""
    async with asyncio.timeout(timeout_s):
        while True:
            status, body = await client.call("GET", f"namespaces/_/activations/{activation_id}")
            if status == 200:
                return body
            assert status == 404, body
            await asyncio.sleep(interval_s)


async def wait_records(client: RestClient, name: str, count: int, timeout_s: float = 30.0, *,
                       interval_s: float = 0.1, **query: Any) -> list[dict[str, Any]]:
    """The records of entity `name` (with docs), once at least `count` exist; more if more appeared.
    `query` adds listing parameters (`limit=200`)."""
    async with asyncio.timeout(timeout_s):
        while True:
            status, records = await client.call("GET", "namespaces/_/activations", name=name, docs=True, **query)
            assert status == 200, records
            if len(records) >= count:
                return list(records)
            await asyncio.sleep(interval_s)


async def wait_quiet(observe: Callable[[], Awaitable[T]], settled: Callable[[T], bool], *, quiet_s: float,
                     timeout_s: float, interval_s: float = 0.25) -> T:
    """The observation once it has been settled and unchanged for `quiet_s` on end.

    `observe()` reads the state (record counts, pending rows, running actions); `settled` says
    whether nothing is still in flight. Any change, or an unsettled state, restarts the quiet
    interval, so a late duplicate shows up as a change instead of slipping past a fixed sleep.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        last = await observe()
        quiet_since = loop.time()
        while True:
            await asyncio.sleep(interval_s)
            seen = await observe()
            if seen != last or not settled(seen):
                last, quiet_since = seen, loop.time()
            elif loop.time() - quiet_since >= quiet_s:
                return seen
