"""No stuck events: publish again what the store accepted but Kafka never took.

In distributed mode the controller (invokes, webhooks) and the feeds process (feed events) store
an event's invocations, then publish them. A publish that fails after the store write leaves a
pending invocation nobody will run; so does a process killed between the two. `RepublishSweep`
runs in both processes: at start it publishes once every invocation still pending from before
the process started (a crash's leftovers), then every `interval_s` those whose publish failed
here. Copies are harmless: an invocation is keyed by its activation id, so all copies reach one
invoker, which runs the first and skips the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import BusError, StoreError
from triggerhub.model import Invocation
from triggerhub.store.base import Store

log = logging.getLogger(__name__)

INTERVAL_S = 2.0


class Republisher(Protocol):
    """The Kafka dispatcher, as the sweep uses it."""

    def unpublished(self) -> list[Invocation]: ...

    async def republish(self, invocation: Invocation) -> None: ...


@dataclass(frozen=True, slots=True)
class SweepStatistics:
    republished: int  # copies Kafka took
    failed: int  # attempts Kafka refused again (retried next round)


class RepublishSweep:
    def __init__(self, dispatcher: Republisher, store: Store, *, started_ms: int, where: str,
                 interval_s: float = INTERVAL_S, clock: Clock = SYSTEM_CLOCK) -> None:
        self._dispatcher = dispatcher
        self._store = store
        self._started_ms = started_ms  # pending rows accepted before this may have lost their publish
        self._where = where
        self._interval_s = interval_s
        self._clock = clock
        self._republished = 0
        self._failed = 0

    def statistics(self) -> SweepStatistics:
        return SweepStatistics(republished=self._republished, failed=self._failed)

    async def run(self) -> None:
        """The start-up pass, then a round every `interval_s`, until cancelled."""
        while not await self._leftovers():
            await self._clock.sleep(self._interval_s)
        while True:
            await self._clock.sleep(self._interval_s)
            await self.sweep_once()

    async def sweep_once(self) -> None:
        """Publish again every invocation whose publish failed in this process."""
        await self._publish(self._dispatcher.unpublished(), why="its publish failed")

    async def _leftovers(self) -> bool:
        """Publish once what is pending from before this process started; False when the store
        could not be read (tried again next round)."""
        try:
            pending = await self._store.list_pending()
        except StoreError as exc:
            log.warning("%s: pending invocations not read (%s); trying again in %s s", self._where, exc,
                        self._interval_s)
            return False
        await self._publish([i for i in pending if i.accepted_ms < self._started_ms],
                            why="it was pending when this process started")
        return True

    async def _publish(self, invocations: Sequence[Invocation], *, why: str) -> None:
        for invocation in invocations:
            try:
                await self._dispatcher.republish(invocation)
            except BusError as exc:
                self._failed += 1
                log.warning("%s: activation %s still not published (%s); trying again in %s s", self._where,
                            invocation.activation_id, exc, self._interval_s)
                continue
            self._republished += 1
            log.info("%s: activation %s of %s published again: %s", self._where, invocation.activation_id,
                     invocation.path_annotation, why)
