"""Event log retention: the background task that prunes trigger events out of their bounds.

Embedded mode runs one in the hub. Distributed mode runs one in each controller, each asking
`leading()` before a round: one controller of a cluster holds the pruning lease (cli/pruning.py)
and prunes, the others stand by and take over when it goes. Each round prunes step by step
until a step deletes nothing, then sleeps `prune_interval_s` on the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.config import EventLogConfig
from triggerhub.errors import StoreError
from triggerhub.store.base import Pruned, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PrunerStatistics:
    rounds: int  # rounds this pruner ran, leading or not
    leading_rounds: int  # rounds in which it led, and so pruned
    events: int  # events it deleted


class EventPruner:
    def __init__(self, store: Store, config: EventLogConfig, *, clock: Clock = SYSTEM_CLOCK,
                 leading: Callable[[], Awaitable[bool]] | None = None) -> None:
        """`leading`: asked before each round; a round in which it answers False prunes nothing
        (None: always lead, as the one pruner of an embedded hub)."""
        self._store = store
        self._config = config
        self._clock = clock
        self._leading = leading
        self._rounds = self._leading_rounds = self._events = 0

    def statistics(self) -> PrunerStatistics:
        return PrunerStatistics(self._rounds, self._leading_rounds, self._events)

    async def prune_once(self) -> Pruned:
        """Prune until every bound holds; what was deleted in all."""
        config = self._config
        before_ms = self._clock.now_ms() - config.retention_s * 1000 if config.retention_s > 0 else 0
        total = Pruned()
        while True:
            step = await self._store.prune_events(before_ms=before_ms, max_per_trigger=config.max_per_trigger,
                                                  max_total=config.max_total, batch=max(1, config.prune_batch))
            total = Pruned(total.by_age + step.by_age, total.by_trigger_bound + step.by_trigger_bound,
                           total.by_total_bound + step.by_total_bound, total.replay_marks + step.replay_marks)
            if step.events == 0:
                break
        if total.events or total.replay_marks:
            log.info("event log pruned: %d events older than %d s, %d beyond %d per trigger, %d beyond %d in all; "
                     "%d replay marks", total.by_age, config.retention_s, total.by_trigger_bound,
                     config.max_per_trigger, total.by_total_bound, config.max_total, total.replay_marks)
        return total

    async def run_until(self, stop: asyncio.Event) -> None:
        """Prune every `prune_interval_s` until `stop` is set; a store outage skips a round."""
        while not stop.is_set():
            self._rounds += 1
            try:
                if self._leading is None or await self._leading():
                    self._leading_rounds += 1
                    self._events += (await self.prune_once()).events
            except StoreError as exc:
                log.warning("event log not pruned this round: %s", exc)
            sleeping = asyncio.ensure_future(self._clock.sleep(self._config.prune_interval_s))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeping.cancel()
                stopping.cancel()
