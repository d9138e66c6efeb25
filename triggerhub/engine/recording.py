"""Run an invocation to its one activation record: the step embedded and distributed mode share.

`run_to_record` executes an invocation once and stores its record. When the store write fails:
- the action is not run again (its effects must not repeat); only the write is retried;
- `complete()` is retried on StoreError with exponential backoff, `RecordRetry.attempts` times
  a round (by default 6 attempts, pauses of 0.1 s doubling: about 3 s);
- an exhausted round is surfaced: one ERROR line naming the activation, and `surface(error)`,
  so that a blocking caller is answered 503 instead of waiting for nothing;
- the record is kept and, after the longest pause (5 s), another round starts: the activation
  ends in its one record as soon as the store takes it, and is never left pending silently. A
  process stopped meanwhile leaves the pending row (embedded mode runs it again at the next
  start) or the uncommitted invocation message (distributed mode redelivers it).
A record already stored under the same id (a redelivered invocation) is not stored twice; the
first one is returned. Each stored record logs one line: `activation <id> of <path> ended on
<where>: <status>`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from triggerhub.errors import StoreError
from triggerhub.model import Activation, Invocation, now_ms
from triggerhub.observe import metrics, otel
from triggerhub.store.base import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Execute = Callable[[Invocation], Awaitable[Activation]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RecordRetry:
    """How often a failing store write is retried before the failure is surfaced."""

    attempts: int = 6  # per round, the first one included
    first_pause_s: float = 0.1
    max_pause_s: float = 5.0

    def pauses_s(self) -> Iterator[float]:
        """The pauses between the attempts of one round."""
        pause_s = self.first_pause_s
        for _ in range(self.attempts - 1):
            yield pause_s
            pause_s = min(pause_s * 2, self.max_pause_s)


class RecordNotStored(StoreError):
    """A round of store writes failed; the record is kept and retried."""

    def __init__(self, invocation: Invocation, record: Activation, attempts: int, cause: StoreError) -> None:
        super().__init__(
            f"activation {record.activation_id} of {invocation.path_annotation or invocation.action.fqn} ran "
            f"({record.response.status_code.text}) but its record could not be stored after {attempts} attempts "
            f"({cause}); it is stored as soon as the store answers: GET /api/v1/namespaces/_/activations/"
            f"{record.activation_id}")
        self.record = record
        self.cause = cause


def _ignore(error: RecordNotStored) -> None:
    """The default `surface`: the ERROR line is all (nobody waits for this activation)."""


async def run_to_record(invocation: Invocation, *, execute: Execute, store: Store, where: str,
                        retry: RecordRetry = RecordRetry(), surface: Callable[[RecordNotStored], None] = _ignore,
                        sleep: Sleep = asyncio.sleep) -> Activation:
    """Execute `invocation` once and return its stored record (the first one, if it had one)."""
    record = await execute(invocation)
    stored = await _retried(lambda: store.complete(record), invocation, record, retry, surface, sleep)
    if stored:
        metrics.activation_stored(record.response.status_code.name.lower(), start_ms=record.start_ms,
                                  end_ms=record.end_ms, received_ms=invocation.received_ms or None, stored_ms=now_ms())
        otel.activation_stored(record)
        log.info("activation %s of %s ended on %s: %s", record.activation_id, invocation.path_annotation, where,
                 record.response.status_code.text)
        return record
    first = await _retried(lambda: store.get_activation(invocation.namespace, record.activation_id), invocation,
                           record, retry, surface, sleep)
    return first or record


async def _retried(attempt: Callable[[], Awaitable[T]], invocation: Invocation, record: Activation,
                   retry: RecordRetry, surface: Callable[[RecordNotStored], None], sleep: Sleep) -> T:
    pauses_s = retry.pauses_s()
    while True:
        try:
            return await attempt()
        except StoreError as exc:
            pause_s = next(pauses_s, None)
            if pause_s is None:  # the round is exhausted: say so, then start another
                error = RecordNotStored(invocation, record, retry.attempts, exc)
                log.error("%s", error)
                surface(error)
                pauses_s, pause_s = retry.pauses_s(), retry.max_pause_s
            else:
                log.warning("activation %s: storing its record failed (%s); retrying in %.1f s",
                            record.activation_id, exc, pause_s)
            await sleep(pause_s)
