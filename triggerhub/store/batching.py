"""Group commit: concurrent writes of one kind share a transaction, with no background task.

Each caller queues its request and waits for the batch lock; whoever gets the lock writes every
request queued so far in one transaction and hands each caller its own answer. Under load this
turns N commits (and N SQLite thread hops per statement) into one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from triggerhub.errors import StoreError

Request = TypeVar("Request")
Answer = TypeVar("Answer")


@dataclass(slots=True)
class _Queued(Generic[Request, Answer]):
    request: Request
    answer: asyncio.Future[Answer]


class GroupCommit(Generic[Request, Answer]):
    """`submit(r)` answers as `write_batch([r])[0]` would, but shares the write with its neighbours.

    `write_batch` gets the requests in submission order and must answer each in that order. When
    a batch of several fails, each request is retried alone, so one bad request cannot fail the
    requests that happened to share its batch.
    """

    def __init__(self, write_batch: Callable[[list[Request]], Awaitable[list[Answer]]], *,
                 max_batch: int = 256) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._queue: list[_Queued[Request, Answer]] = []
        self._lock = asyncio.Lock()
        self.batches = 0  # statistics: transactions written, for the benchmark and tests

    async def submit(self, request: Request) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        queued = _Queued(request, answer)
        self._queue.append(queued)
        try:
            while not queued.answer.done():
                async with self._lock:
                    if not queued.answer.done():
                        batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
                        await self._write(batch, queued)
        except asyncio.CancelledError:
            if queued in self._queue:  # cancelled while waiting: never written
                self._queue.remove(queued)
            raise
        return queued.answer.result()

    async def _write(self, batch: list[_Queued[Request, Answer]], leader: _Queued[Request, Answer]) -> None:
        try:
            self.batches += 1
            answers = await self._write_batch([q.request for q in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].answer.set_exception(exc)
                return
            await self._write_one_by_one(batch, leader)
            return
        except BaseException:
            _abandon(batch, leader)
            raise
        for queued, answer in zip(batch, answers, strict=True):
            queued.answer.set_result(answer)

    async def _write_one_by_one(self, batch: list[_Queued[Request, Answer]],
                                leader: _Queued[Request, Answer]) -> None:
        try:
            for queued in batch:
                self.batches += 1
                try:
                    queued.answer.set_result((await self._write_batch([queued.request]))[0])
                except Exception as exc:
                    queued.answer.set_exception(exc)
        except BaseException:
            _abandon(batch, leader)
            raise


def _abandon(batch: list[_Queued[Request, Answer]], leader: _Queued[Request, Answer]) -> None:
    """The writing task was cancelled: the others learn that their outcome is unknown."""
    leader.answer.cancel()
    for queued in batch:
        if not queued.answer.done():
            queued.answer.set_exception(StoreError(
                "the task writing this batch was cancelled, so the write may or may not have been "
                "committed; retry it (accept and complete are idempotent and answer False on a repeat)"))
