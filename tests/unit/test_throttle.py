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
