"""One clock for the whole hub: wall time in seconds and milliseconds, monotonic time, sleeping.

Every timing decision (alarm instants, retry backoff, idle containers, activation durations,
event stamps) reads time through an injected `Clock`, so tests drive time with a test clock
(`tests/plugins/clock.py`) instead of sleeping. `SystemClock` is the real one. This module is a
leaf: it imports nothing from triggerhub.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

LONGEST_SLEEP_S = 60.0
"""A wall-clock sleep is re-checked at least this often, so a suspended machine does not fire early."""


class Clock(Protocol):
    """Wall time (epoch, UTC), monotonic time, and sleeping on either."""

    def now_s(self) -> float:
        """Seconds since the Unix epoch (UTC)."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC), as activation and event records store them."""

    def monotonic_s(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""

    async def sleep(self, duration_s: float) -> None:
        """Return after `duration_s` seconds (at once if it is not positive)."""

    async def sleep_until(self, when_s: float) -> None:
        """Return once `now_s() >= when_s` (at once if that is already true)."""


class SystemClock:
    """The machine's clocks and the event loop's sleep."""

    def now_s(self) -> float:
        return time.time()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic_s(self) -> float:
        return time.monotonic()

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(max(duration_s, 0.0))

    async def sleep_until(self, when_s: float) -> None:
        while (remaining_s := when_s - time.time()) > 0:
            await asyncio.sleep(min(remaining_s, LONGEST_SLEEP_S))


SYSTEM_CLOCK = SystemClock()
"""The default for every `clock=` option; it holds no state, so one instance serves all."""
