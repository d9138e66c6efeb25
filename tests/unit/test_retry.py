"""The one retry rule: store and bus outages are retried with capped, jittered backoff on the
injected clock; anything else (an ApiError above all) is surfaced at the first attempt."""

from __future__ import annotations

import logging

import pytest

from tests.plugins.clock import TestClock
from triggerhub.errors import BusError, FeedError, NotFound, StoreError
from triggerhub.retry import DEFAULT_BACKOFF, Backoff, Rounds, retrying

STEADY = Backoff(first_s=0.5, factor=2.0, cap_s=5.0, jitter=0.0)


class Flaky:
    """Fails with the given errors in turn, then returns "done"; records the clock at each attempt."""

    def __init__(self, clock: TestClock, *errors: Exception) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.attempts_at_s: list[float] = []

    async def __call__(self) -> str:
        self.attempts_at_s.append(self.clock.now_s())
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_store_and_bus_errors_are_retried_with_capped_exponential_pauses(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = TestClock(0.0, autojump=True)
    attempt = Flaky(clock, StoreError("db away"), BusError("kafka away"), StoreError("1"), StoreError("2"),
                    StoreError("3"), StoreError("4"))
    with caplog.at_level(logging.WARNING, logger="triggerhub.retry"):
        assert await retrying("storing event e1", attempt, clock=clock, backoff=STEADY) == "done"
    assert attempt.attempts_at_s == [0.0, 0.5, 1.5, 3.5, 7.5, 12.5, 17.5]  # 0.5, 1, 2, 4, then capped at 5
    assert caplog.messages[0] == "storing event e1 failed (db away); retrying in 0.5 s (attempt 2)"
    assert len(caplog.messages) == 6


@pytest.mark.parametrize("error", [NotFound("trigger /guest/t does not exist"), FeedError("broken"),
                                   ValueError("a bug")])
async def test_anything_else_is_surfaced_at_the_first_attempt(error: Exception) -> None:
    clock = TestClock(0.0, autojump=True)
    attempt = Flaky(clock, error)
    with pytest.raises(type(error)) as caught:
        await retrying("storing event e1", attempt, clock=clock, backoff=STEADY)
    assert caught.value is error
    assert (attempt.attempts_at_s, clock.now_s()) == ([0.0], 0.0)


def test_jitter_shortens_a_pause_by_at_most_its_fraction() -> None:
    assert DEFAULT_BACKOFF.pause_s(1, draw=lambda: 0.0) == 0.5
    assert DEFAULT_BACKOFF.pause_s(1, draw=lambda: 1.0) == 0.25
    assert DEFAULT_BACKOFF.pause_s(30, draw=lambda: 0.0) == DEFAULT_BACKOFF.cap_s


async def test_rounds_report_each_exhausted_round_then_pause_longest_and_go_on(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = TestClock(0.0, autojump=True)
    attempt = Flaky(clock, *(StoreError(f"db away {n}") for n in range(1, 8)))
    reported: list[str] = []
    rounds = Rounds(attempts=3, exhausted=lambda exc: reported.append(str(exc)))
    with caplog.at_level(logging.WARNING, logger="triggerhub.retry"):
        assert await retrying("storing record a1", attempt, clock=clock, backoff=STEADY, rounds=rounds) == "done"
    # pauses 0.5, 1, then the round of 3 is exhausted: the cap (5); again 0.5, 1, 5; then 0.5
    assert attempt.attempts_at_s == [0.0, 0.5, 1.5, 6.5, 7.0, 8.0, 13.0, 13.5]
    assert reported == ["db away 3", "db away 6"]
    assert len(caplog.messages) == 5  # a warning for each failure that did not end a round
