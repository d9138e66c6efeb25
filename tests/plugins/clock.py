"""A test Clock (triggerhub.clock) whose time moves only when the test, or autojump, moves it.

In the manner of Trio's MockClock: wall and monotonic time advance together from the values the
test gives; `advance_to`/`advance` step through every sleeper's deadline in order, letting the
woken tasks run at each one; `jump` moves time at once. With `autojump=True` the clock jumps to
the next deadline by itself whenever the tasks have settled (every runnable task ran until it
waited again) and someone sleeps on the clock, so a test that waits on time never really sleeps.
Settling is counted in event-loop turns: code that waits on real I/O should use the manual mode,
or pass `autojump_threshold_s` (real seconds of quiet before a jump).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone

SETTLE_ROUNDS = 200


def utc_s(text: str) -> float:
    """'2024-10-27T00:30:00' (UTC) -> epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


async def settle(rounds: int = SETTLE_ROUNDS) -> None:
    """Let every ready task run until it blocks again (the fakes here complete without I/O)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@dataclass(order=True)
class _Sleeper:
    elapsed_s: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class TestClock:
    """A triggerhub.clock.Clock for tests; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(self, now_s: float = 0.0, *, monotonic_s: float = 0.0, autojump: bool = False,
                 autojump_threshold_s: float = 0.0) -> None:
        self._epoch_s = now_s
        self._monotonic_start_s = monotonic_s
        self._elapsed_s = 0.0
        self._sleepers: list[_Sleeper] = []
        self._seq = 0
        self._autojump = autojump
        self._autojump_threshold_s = autojump_threshold_s
        self._jumper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ reading

    def now_s(self) -> float:
        return self._epoch_s + self._elapsed_s

    def now_ms(self) -> int:
        return int(self.now_s() * 1000)

    def monotonic_s(self) -> float:
        return self._monotonic_start_s + self._elapsed_s

    @property
    def sleeping(self) -> int:
        """How many tasks are waiting on this clock."""
        return len(self._sleepers)

    # ------------------------------------------------------------------ sleeping

    async def sleep(self, duration_s: float) -> None:
        await self._sleep_to(self._elapsed_s + duration_s)

    async def sleep_until(self, when_s: float) -> None:
        await self._sleep_to(when_s - self._epoch_s)

    async def _sleep_to(self, elapsed_s: float) -> None:
        if elapsed_s <= self._elapsed_s:
            await asyncio.sleep(0)
            return
        self._seq += 1
        sleeper = _Sleeper(elapsed_s, self._seq, asyncio.get_running_loop().create_future())
        self._sleepers.append(sleeper)
        self._ensure_jumper()
        try:
            await sleeper.future
        finally:
            if sleeper in self._sleepers:
                self._sleepers.remove(sleeper)

    # ------------------------------------------------------------------ moving time

    def jump(self, duration_s: float) -> None:
        """Move time forward at once and wake every sleeper that is now due."""
        if duration_s < 0:
            raise ValueError(f"time cannot go back (jump of {duration_s} s)")
        self._elapsed_s += duration_s
        for sleeper in sorted(s for s in self._sleepers if s.elapsed_s <= self._elapsed_s):
            self._sleepers.remove(sleeper)
            if not sleeper.future.done():
                sleeper.future.set_result(None)

    async def advance(self, duration_s: float) -> None:
        await self.advance_to(self.now_s() + duration_s)

    async def advance_to(self, when_s: float) -> None:
        """Step through every deadline up to `when_s` (epoch s), letting woken tasks run at each one."""
        await settle()
        target_s = when_s - self._epoch_s
        while due := sorted(s for s in self._sleepers if s.elapsed_s <= target_s):
            self.jump(max(due[0].elapsed_s - self._elapsed_s, 0.0))
            await settle()
        self.jump(max(target_s - self._elapsed_s, 0.0))
        await settle()

    def _ensure_jumper(self) -> None:
        if self._autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = asyncio.get_running_loop().create_task(self._autojump_loop())

    async def _autojump_loop(self) -> None:
        """While anyone sleeps on this clock: once the tasks settle, jump to the earliest deadline."""
        while self._sleepers:
            if self._autojump_threshold_s > 0:
                await asyncio.sleep(self._autojump_threshold_s)
            await settle()
            if self._sleepers:
                earliest = min(self._sleepers)
                self.jump(max(earliest.elapsed_s - self._elapsed_s, 0.0))
