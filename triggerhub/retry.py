"""One rule for retrying, used by every feed and by the distributed services.

What is retried: a `StoreError` or a `BusError` (the database or Kafka is away, and usually comes
back). Everything else, an `ApiError` above all ("trigger ... does not exist"), is surfaced to the
caller at once: retrying cannot fix it. The pause between attempts grows exponentially from
`Backoff.first_s` up to `Backoff.cap_s`, with random jitter so several waiters do not retry in
step, and is slept on the injected clock. Each failed attempt logs one warning. With `Rounds`, a
caller that must not wait silently (a blocking invoke whose record cannot be stored) is told after
every `Rounds.attempts` failures in a row; the retrying goes on after the longest pause.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import BusError, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRIED: tuple[type[Exception], ...] = (StoreError, BusError)
"""The failures worth another attempt: a dependency that is away."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Pauses between attempts: first_s, then times factor each time, at most cap_s; each pause
    is shortened by up to `jitter` (a fraction) at random."""

    first_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 5.0
    jitter: float = 0.5

    def pause_s(self, failures: int, *, draw: Callable[[], float] = random.random) -> float:
        """The pause after the `failures`-th failure in a row (1 for the first)."""
        exponent = min(max(failures - 1, 0), 64)
        full_s = min(self.cap_s, self.first_s * self.factor ** exponent)
        return full_s * (1.0 - self.jitter * draw())


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rounds:
    """Retrying in rounds of `attempts`: when a round has failed, `exhausted(last error)` is called
    instead of the warning (it reports the failure to whoever waits), `Backoff.cap_s` is slept,
    and a new round starts."""

    attempts: int
    exhausted: Callable[[Exception], None]


async def retrying(what: str, attempt: Callable[[], Awaitable[T]], *, clock: Clock = SYSTEM_CLOCK,
                   backoff: Backoff = DEFAULT_BACKOFF, logger: logging.Logger = log,
                   rounds: Rounds | None = None) -> T:
    """The result of `attempt()`, retried while it raises one of RETRIED; `what` names the
    attempt in the warning ("storing message 7 of trigger /guest/t")."""
    failures = 0
    while True:
        try:
            return await attempt()
        except RETRIED as exc:
            failures += 1
            if rounds is not None and failures >= rounds.attempts:
                rounds.exhausted(exc)
                failures, pause_s = 0, backoff.cap_s
            else:
                pause_s = backoff.pause_s(failures)
                logger.warning("%s failed (%s); retrying in %.1f s (attempt %d)", what, exc, pause_s, failures + 1)
            await clock.sleep(pause_s)
