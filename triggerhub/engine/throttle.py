"""Per-namespace throttles as OpenWhisk applies them: calendar-minute rate windows and a
count of activations in flight. In memory; one hub process enforces its own share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from triggerhub.errors import Throttled


@dataclass(slots=True)
class _Window:
    minute: int
    count: int


class RateThrottler:
    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self._windows: dict[str, _Window] = {}

    def check(self, namespace: str, allowed: int) -> None:
        """Count one request; raise Throttled when the minute's allowance is spent."""
        minute = self._clock_ms() // 60_000
        window = self._windows.get(namespace)
        if window is None or window.minute != minute:
            window = self._windows[namespace] = _Window(minute, 0)
        if window.count >= allowed:
            raise Throttled(f"Too many requests in the last minute (count: {window.count}, allowed: {allowed}).")
        window.count += 1


class ConcurrencyThrottler:
    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}

    def acquire(self, namespace: str, allowed: int) -> None:
        count = self._in_flight.get(namespace, 0)
        if count >= allowed:
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
