"""The Clock seam: the system clock agrees with the machine; the test clock moves only on demand."""

from __future__ import annotations

import asyncio
import time

import pytest

from triggerhub.clock import SystemClock
from tests.plugins.clock import TestClock, settle


async def test_system_clock_reads_the_machine_clocks() -> None:
    clock = SystemClock()
    before_s = time.time()
    now_s, now_ms, mono_s = clock.now_s(), clock.now_ms(), clock.monotonic_s()
    assert before_s <= now_s <= time.time()
    assert int(before_s * 1000) <= now_ms <= int(time.time() * 1000)
    assert mono_s <= time.monotonic()
    await clock.sleep_until(now_s - 1.0)  # a past instant returns at once
    await clock.sleep(0.0)


async def test_test_clock_moves_wall_and_monotonic_time_together() -> None:
    clock = TestClock(1_000.0, monotonic_s=5.0)
    assert (clock.now_s(), clock.now_ms(), clock.monotonic_s()) == (1_000.0, 1_000_000, 5.0)
    clock.jump(2.5)
    assert (clock.now_s(), clock.now_ms(), clock.monotonic_s()) == (1_002.5, 1_002_500, 7.5)
    with pytest.raises(ValueError, match="time cannot go back"):
        clock.jump(-1.0)


async def test_advance_to_wakes_sleepers_in_deadline_order() -> None:
    clock = TestClock(0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, when_s: float) -> None:
        await clock.sleep_until(when_s)
        woke.append((name, clock.now_s()))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("late", 30.0))
        tg.create_task(sleeper("early", 10.0))
        await settle()
        assert (woke, clock.sleeping) == ([], 2)
        await clock.advance_to(20.0)
        assert (woke, clock.now_s()) == ([("early", 10.0)], 20.0)
        await clock.advance(10.0)
    assert woke == [("early", 10.0), ("late", 30.0)]


async def test_autojump_runs_a_long_sleep_without_waiting() -> None:
    """Two hours of clock time pass while nothing else runs; the test takes no real time."""
    clock = TestClock(0.0, autojump=True)
    await clock.sleep(3_600.0)
    await clock.sleep_until(7_200.0)
    assert (clock.now_s(), clock.monotonic_s(), clock.sleeping) == (7_200.0, 7_200.0, 0)
