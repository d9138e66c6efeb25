"""Rate windows are calendar minutes per namespace; concurrency counts activations in flight."""

from __future__ import annotations

import pytest

from triggerhub.engine.throttle import ConcurrencyThrottler, RateThrottler
from triggerhub.errors import Throttled


def test_rate_window_per_namespace_and_minute():
    now = [120_000]
    rates = RateThrottler(lambda: now[0])
    rates.check("guest", 2)
    rates.check("guest", 2)
    with pytest.raises(Throttled, match=r"^Too many requests in the last minute \(count: 2, allowed: 2\)\.$"):
        rates.check("guest", 2)
    rates.check("alice", 2)  # another namespace has its own window
    now[0] = 179_999
    with pytest.raises(Throttled):
        rates.check("guest", 2)
    now[0] = 180_000  # the next calendar minute starts a fresh window
    rates.check("guest", 2)


def test_concurrency_acquire_release():
    slots = ConcurrencyThrottler()
    slots.acquire("guest", 1)
    with pytest.raises(Throttled, match=r"^Too many concurrent requests in flight \(count: 1, allowed: 1\)\.$"):
        slots.acquire("guest", 1)
    slots.release("guest")
    slots.acquire("guest", 1)
    assert slots.in_flight("guest") == 1


async def test_feed_admission_waits_for_room_instead_of_refusing() -> None:
    import asyncio

    from triggerhub.engine.throttle import FeedAdmission

    admission = FeedAdmission(lambda: 120_000)
    await admission.wait_activations("guest", 2, per_minute=100, concurrent=2)
    waiting = asyncio.ensure_future(admission.wait_activations("guest", 1, per_minute=100, concurrent=2))
    await asyncio.sleep(0)
    assert not waiting.done() and admission.in_flight("guest") == 2
    await admission.wait_activations("alice", 2, per_minute=100, concurrent=2)  # another namespace has its own room
    admission.release("guest")
    await asyncio.wait_for(waiting, 1)
    assert admission.in_flight("guest") == 2
    await admission.wait_activations("guest", 0, per_minute=100, concurrent=2)  # nothing to run: no wait


async def test_feed_admission_past_the_minute_allowance_sleeps_until_the_next_minute() -> None:
    from triggerhub.engine.throttle import FeedAdmission

    now = [125_000]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += int(seconds * 1000)

    admission = FeedAdmission(lambda: now[0], sleep)
    assert await admission.wait_event("guest", 2) is False
    assert await admission.wait_event("guest", 2) is False
    assert slept == []
    assert await admission.wait_event("guest", 2) is True  # it waited: the caller re-reads entities
    assert slept == [55.0] and now[0] == 180_000
