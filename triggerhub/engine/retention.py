"""Event log retention: the background task that prunes trigger events out of their bounds.

Embedded mode runs one in the hub; distributed mode one in each controller, and the store lets
one of them delete at a time (store/event_log.py). Each round prunes step by step until a step
deletes nothing, then sleeps `prune_interval_s` on the injected clock.
"""

from __future__ import annotations

import asyncio
import logging

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.config import EventLogConfig
from triggerhub.errors import StoreError
from triggerhub.store.base import Pruned, Store

log = logging.getLogger(__name__)


class EventPruner:
    def __init__(self, store: Store, config: EventLogConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._config = config
        self._clock = clock

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
            try:
                await self.prune_once()
            except StoreError as exc:
                log.warning("event log not pruned this round: %s", exc)
            sleeping = asyncio.ensure_future(self._clock.sleep(self._config.prune_interval_s))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeping.cancel()
                stopping.cancel()
