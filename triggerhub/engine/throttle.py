"""Per-namespace throttles as OpenWhisk applies them to direct calls (calendar-minute rate windows
and a count of activations in flight, refusing with 429) and the waiting admission of feed events.
In memory; one hub process enforces its own share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from triggerhub.errors import Throttled
from triggerhub.observe import metrics

THROTTLED_PREFIXES = ("Too many requests in the last minute", "Too many concurrent requests in flight")
"""How the 429 messages below begin (explain tells a throttled rule from a failed one by them)."""


@dataclass(slots=True)
class _Window:
    minute: int
    count: int


class RateThrottler:
    def __init__(self, clock_ms: Callable[[], int], *, limit: str = "invocations_per_minute") -> None:
        """`limit` names the limit in triggerhub_throttled_total."""
        self._clock_ms = clock_ms
        self._limit = limit
        self._windows: dict[str, _Window] = {}

    def check(self, namespace: str, allowed: int) -> None:
        """Count one request; raise Throttled when the minute's allowance is spent."""
        minute = self._clock_ms() // 60_000
        window = self._windows.get(namespace)
        if window is None or window.minute != minute:
            window = self._windows[namespace] = _Window(minute, 0)
        if window.count >= allowed:
            metrics.throttled(self._limit)
            raise Throttled(f"Too many requests in the last minute (count: {window.count}, allowed: {allowed}).")
        window.count += 1


class ConcurrencyThrottler:
    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}

    def acquire(self, namespace: str, allowed: int) -> None:
        count = self._in_flight.get(namespace, 0)
        if count >= allowed:
            metrics.throttled("concurrent_invocations")
            raise Throttled(f"Too many concurrent requests in flight (count: {count}, allowed: {allowed}).")
        self._in_flight[namespace] = count + 1

    def force_acquire(self, namespace: str) -> None:
        """Count an activation recovered after a restart: it was accepted already."""
        self._in_flight[namespace] = self._in_flight.get(namespace, 0) + 1

    def release(self, namespace: str) -> None:
        count = self._in_flight.get(namespace, 0)
        self._in_flight[namespace] = max(0, count - 1)

    def in_flight(self, namespace: str) -> int:
        return self._in_flight.get(namespace, 0)


class FeedAdmission:
    """The limits of feed-originated events and their rule activations, per namespace. Reaching
    one waits rather than refuses: the feed's `emit` does not return, so the feed stops
    acknowledging (and reading) its source until there is room. Nothing is dropped."""

    def __init__(self, clock_ms: Callable[[], int], sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._clock_ms = clock_ms
        self._sleep = sleep
        self._events: dict[str, _Window] = {}
        self._activations: dict[str, _Window] = {}
        self._in_flight: dict[str, int] = {}
        self._room = asyncio.Event()  # set by every release; waiters re-check their namespace

    async def wait_event(self, namespace: str, per_minute: int) -> bool:
        """Take one event slot; True when that meant waiting for the next minute."""
        return await self._wait_window(self._events, namespace, 1, per_minute, limit="feed_events_per_minute")

    async def wait_activations(self, namespace: str, count: int, *, per_minute: int, concurrent: int) -> None:
        """Take `count` activation slots at once (never some of them, so two waiting events
        cannot hold each other's room). More than `concurrent` at once waits for none in flight."""
        if count == 0:
            return
        await self._wait_window(self._activations, namespace, count, per_minute, limit="feed_activations_per_minute")
        while not self._fits(namespace, count, concurrent):
            metrics.feed_waited("feed_concurrent_activations")
            self._room.clear()
            await self._room.wait()
        self._in_flight[namespace] = self._in_flight.get(namespace, 0) + count

    def _fits(self, namespace: str, count: int, concurrent: int) -> bool:
        in_flight = self._in_flight.get(namespace, 0)
        return in_flight == 0 or in_flight + count <= concurrent

    def release(self, namespace: str) -> None:
        self._in_flight[namespace] = max(0, self._in_flight.get(namespace, 0) - 1)
        self._room.set()

    def in_flight(self, namespace: str) -> int:
        return self._in_flight.get(namespace, 0)

    async def _wait_window(self, windows: dict[str, _Window], namespace: str, count: int, per_minute: int, *,
                           limit: str) -> bool:
        waited = False
        while True:
            now = self._clock_ms()
            minute = now // 60_000
            window = windows.get(namespace)
            if window is None or window.minute != minute:
                window = windows[namespace] = _Window(minute, 0)
            if window.count == 0 or window.count + count <= per_minute:
                window.count += count
                return waited
            waited = True
            metrics.feed_waited(limit)
            await self._sleep(((minute + 1) * 60_000 - now) / 1000)
