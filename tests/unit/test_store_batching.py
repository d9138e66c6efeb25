"""GroupCommit: concurrent requests share one write; failures and cancellations stay per request."""

from __future__ import annotations

import asyncio

import pytest

from triggerhub.errors import StoreError
from triggerhub.store.batching import GroupCommit


class Writer:
    """A fake batch writer: records each batch and holds the `held` ones (1-based) until released."""

    def __init__(self, held: frozenset[int] = frozenset({1})) -> None:
        self.held = held
        self.batches: list[list[str]] = []
        self.first_started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, batch: list[str]) -> list[str]:
        self.batches.append(batch)
        if len(self.batches) in self.held:
            self.first_started.set()
            await self.release.wait()
            self.release.clear()
        if "bad" in batch:
            raise ValueError(f"bad request in {batch}")
        return [r.upper() for r in batch]


async def test_requests_queued_behind_a_write_share_the_next_one() -> None:
    writer = Writer()
    commit = GroupCommit(writer)
    async with asyncio.TaskGroup() as group:
        first = group.create_task(commit.submit("a"))
        await writer.first_started.wait()
        rest = [group.create_task(commit.submit(r)) for r in ("b", "c", "d")]
        await asyncio.sleep(0)  # let them queue; no time passes
        writer.release.set()
    assert [first.result()] + [t.result() for t in rest] == ["A", "B", "C", "D"]
    assert writer.batches == [["a"], ["b", "c", "d"]]
    assert commit.batches == 2


async def test_a_batch_is_no_larger_than_max_batch() -> None:
    writer = Writer()
    commit = GroupCommit(writer, max_batch=2)
    async with asyncio.TaskGroup() as group:
        group.create_task(commit.submit("a"))
        await writer.first_started.wait()
        for r in ("b", "c", "d", "e", "f"):
            group.create_task(commit.submit(r))
        await asyncio.sleep(0)
        writer.release.set()
    assert writer.batches == [["a"], ["b", "c"], ["d", "e"], ["f"]]


async def test_a_failing_batch_is_retried_request_by_request() -> None:
    writer = Writer()
    commit = GroupCommit(writer)
    async with asyncio.TaskGroup() as group:
        group.create_task(commit.submit("a"))
        await writer.first_started.wait()
        tasks = [group.create_task(_outcome(commit.submit(r))) for r in ("b", "bad", "c")]
        await asyncio.sleep(0)
        writer.release.set()
    assert [t.result() for t in tasks] == ["B", "ValueError: bad request in ['bad']", "C"]
    assert writer.batches == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]


async def test_a_request_cancelled_while_queued_is_never_written() -> None:
    writer = Writer()
    commit = GroupCommit(writer)
    async with asyncio.TaskGroup() as group:
        group.create_task(commit.submit("a"))
        await writer.first_started.wait()
        doomed = group.create_task(commit.submit("doomed"))
        kept = group.create_task(commit.submit("kept"))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.sleep(0)
        writer.release.set()
    assert doomed.cancelled()
    assert kept.result() == "KEPT"
    assert writer.batches == [["a"], ["kept"]]


async def test_when_the_writing_task_is_cancelled_the_others_learn_their_outcome_is_unknown() -> None:
    writer = Writer(held=frozenset({1, 2}))
    commit = GroupCommit(writer)
    async with asyncio.TaskGroup() as group:
        group.create_task(commit.submit("a"))
        await writer.first_started.wait()
        leader, follower = (group.create_task(_outcome(commit.submit(r))) for r in ("x", "y"))
        await asyncio.sleep(0)
        writer.first_started.clear()
        writer.release.set()
        await writer.first_started.wait()
        assert writer.batches == [["a"], ["x", "y"]]
        leader.cancel()
    assert leader.cancelled()
    assert follower.result() == (
        "StoreError: the task writing this batch was cancelled, so the write may or may not have been "
        "committed; retry it (accept and complete are idempotent and answer False on a repeat)")


async def _outcome(pending: object) -> str:
    try:
        return await pending  # type: ignore[misc,no-any-return]
    except (ValueError, StoreError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_writer_answers_must_match_the_batch() -> None:
    # zip(strict=True) turns a writer bug into an error rather than a wrong answer.
    async def short(batch: list[str]) -> list[str]:
        return []

    with pytest.raises(ValueError, match="zip"):
        asyncio.run(GroupCommit(short).submit("a"))
