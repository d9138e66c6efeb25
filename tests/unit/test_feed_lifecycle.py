"""feeds/lifecycle.py, the skeleton every feed runs on: a lost source is reopened after the retry
pause on the injected clock, a change the hub refuses pauses the feed (once) and ends the loop,
the session is closed however the loop ends, and stop() is idempotent."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.plugins.clock import TestClock, settle
from triggerhub.errors import FeedError, NotFound, StoreError
from triggerhub.feeds.lifecycle import FeedTask, closed_on_failure, translated

log = logging.getLogger("tests.feed_lifecycle")


class Session:
    """A source connection that records how it was closed."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed: list[bool] = []  # `lost` of each close

    async def close(self, *, lost: bool) -> None:
        self.closed.append(lost)


class Source:
    """Opens numbered sessions; each step of session n does what `steps[n]` says: raise an error
    or, once the list is used up, wait (as a feed waits for its next change)."""

    def __init__(self, clock: TestClock, steps: dict[int, list[Exception]]) -> None:
        self.clock = clock
        self.steps = steps
        self.sessions: list[Session] = []
        self.steps_at_s: list[tuple[int, float]] = []

    async def reopen(self) -> Session:
        session = Session(len(self.sessions) + 1)
        self.sessions.append(session)
        return session

    async def step(self, session: Session) -> None:
        self.steps_at_s.append((session.number, self.clock.now_s()))
        pending = self.steps.get(session.number, [])
        if pending:
            raise pending.pop(0)
        await asyncio.Event().wait()


def feed_task(tasks: asyncio.TaskGroup, clock: TestClock, failures: list[str]) -> FeedTask:
    return FeedTask("test", trigger="/guest/t", tasks=tasks, clock=clock, on_failed=failures.append, logger=log)


async def test_a_lost_source_is_reopened_after_the_retry_pause(caplog: pytest.LogCaptureFixture) -> None:
    clock = TestClock(0.0)
    source = Source(clock, {1: [ConnectionResetError("reset by peer")], 2: [FeedError("refused")]})
    failures: list[str] = []
    with caplog.at_level(logging.WARNING, logger=log.name):
        async with asyncio.TaskGroup() as tasks:
            run = feed_task(tasks, clock, failures)
            await run.start(run.follow(None, reopen=source.reopen, step=source.step, lost=(OSError,),
                                       where="db:5432", retry_s=1.0))
            await settle()
            await clock.advance(1.0)
            await settle()
            await clock.advance(1.0)
            await settle()
            assert run.running
            assert await run.stop() is True
            assert await run.stop() is False  # idempotent
    assert source.steps_at_s == [(1, 0.0), (2, 1.0), (3, 2.0)]
    assert [s.closed for s in source.sessions] == [[True], [True], [False]]  # lost twice, then stopped
    assert caplog.messages == [
        "test feed /guest/t lost db:5432 (reset by peer); reconnecting in 1.0 s",
        "test feed /guest/t lost db:5432 (refused); reconnecting in 1.0 s",
    ]
    assert failures == []


async def test_a_refused_change_pauses_the_feed_once_and_ends_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    clock = TestClock(0.0)
    source = Source(clock, {0: [NotFound("trigger /guest/t does not exist")]})
    failures: list[str] = []
    with caplog.at_level(logging.WARNING, logger=log.name):
        async with asyncio.TaskGroup() as tasks:
            run = feed_task(tasks, clock, failures)
            first = Session(0)
            await run.start(run.follow(first, reopen=source.reopen, step=source.step, lost=(OSError,),
                                       where="db:5432", retry_s=1.0))
            await settle()
            await run.stop()
    assert failures == ["trigger /guest/t does not exist"]
    assert first.closed == [False] and source.sessions == []  # the given session was used, never reopened
    assert caplog.messages == ["test feed /guest/t stops: the hub refused a change (trigger /guest/t does not exist)"]


async def test_an_outage_while_storing_is_retried_on_the_clock() -> None:
    clock = TestClock(0.0, autojump=True)
    outcomes: list[Exception | str] = [StoreError("db away"), "stored"]

    async def emit() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async with asyncio.TaskGroup() as tasks:
        run = feed_task(tasks, clock, [])
        assert await run.store("storing change 7", emit) == "stored"
    assert outcomes == [] and clock.now_s() > 0.0


async def test_a_connection_failing_to_prepare_is_closed_and_its_error_translated() -> None:
    closed: list[str] = []

    async def close() -> None:
        closed.append("closed")

    with pytest.raises(FeedError) as caught:
        async with closed_on_failure(close, errors=(OSError,), failure="db:5432: could not install the trigger"):
            raise ConnectionRefusedError("connection refused")
    assert (str(caught.value), closed) == ("db:5432: could not install the trigger: connection refused", ["closed"])
    with pytest.raises(asyncio.CancelledError):
        async with closed_on_failure(close, errors=(OSError,), failure="unused"):
            raise asyncio.CancelledError
    assert closed == ["closed", "closed"]  # closed, and the cancellation kept as it is
    with pytest.raises(ValueError):
        async with translated((OSError,), failure="unused"):
            raise ValueError("a bug is not translated")
