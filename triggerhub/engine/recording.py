"""Run an invocation to its one activation record: the step embedded and distributed mode share.

`run_to_record` executes an invocation once and stores its record. When the store write fails:
- the action is not run again (its effects must not repeat); only the write is retried, by the
  one retry helper (triggerhub/retry.py: a StoreError or BusError is retried, nothing else);
- `complete()` is retried with exponential backoff (no jitter), `RecordRetry.attempts` times
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

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import StoreError
from triggerhub.model import Activation, Invocation
from triggerhub.retry import Backoff, Rounds, retrying
from triggerhub.store.base import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Execute = Callable[[Invocation], Awaitable[Activation]]


@dataclass(frozen=True, slots=True)
class RecordRetry:
    """How often a failing store write is retried before the failure is surfaced."""

    attempts: int = 6  # per round, the first one included
    first_pause_s: float = 0.1
    max_pause_s: float = 5.0

    @property
    def backoff(self) -> Backoff:
        """Pauses of first_pause_s doubling up to max_pause_s; no jitter: one writer per record."""
        return Backoff(first_s=self.first_pause_s, factor=2.0, cap_s=self.max_pause_s, jitter=0.0)


class RecordNotStored(StoreError):
    """A round of store writes failed; the record is kept and retried."""

    def __init__(self, invocation: Invocation, record: Activation, attempts: int, cause: Exception) -> None:
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
                        clock: Clock = SYSTEM_CLOCK) -> Activation:
    """Execute `invocation` once and return its stored record (the first one, if it had one)."""
    record = await execute(invocation)

    def exhausted(cause: Exception) -> None:
        error = RecordNotStored(invocation, record, retry.attempts, cause)
        log.error("%s", error)
        surface(error)

    async def retried(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        return await retrying(f"activation {record.activation_id}: {what}", attempt, clock=clock,
                              backoff=retry.backoff, logger=log, rounds=Rounds(attempts=retry.attempts,
                                                                              exhausted=exhausted))

    if await retried("storing its record", lambda: store.complete(record)):
        log.info("activation %s of %s ended on %s: %s", record.activation_id, invocation.path_annotation, where,
                 record.response.status_code.text)
        return record
    first = await retried("reading its stored record",
                          lambda: store.get_activation(invocation.namespace, record.activation_id))
    return first or record
