"""Time as the feeds see it: a Clock protocol and the real system clock.

Every timing decision in a feed (alarm instants, debounce windows) goes through a Clock so
tests can drive time with a fake clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""

    async def sleep_until(self, when_s: float) -> None:
        """Return once `now() >= when_s` (at once if that is already true)."""


class SystemClock:
    """Wall-clock time; sleeps are re-checked so a suspended machine does not fire early."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when_s: float) -> None:
        while (remaining_s := when_s - time.time()) > 0:
            await asyncio.sleep(min(remaining_s, 60.0))


def now_ms(clock: Clock) -> int:
    return int(clock.now() * 1000)
