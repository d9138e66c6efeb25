"""The event log's pruner, wired per mode. An embedded hub's pruner always prunes. In distributed
mode every controller runs one, and the one holding the cluster's pruning lease (a PostgreSQL
session advisory lock named after the topic prefix, as the feeds leadership is) prunes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from triggerhub.config import HubConfig
from triggerhub.engine.retention import EventPruner
from triggerhub.store.base import Store

if TYPE_CHECKING:  # a controller's lease loads it; an embedded hub on SQLite never does
    import asyncpg

log = logging.getLogger(__name__)


class PruningLease:
    """Tried, never waited for, before each round. The lock is held until this process's
    connection ends, however it ends, so a standby takes it over at its next round."""

    def __init__(self, dsn: str, name: str) -> None:
        self._dsn = dsn
        self._name = name
        self._connection: asyncpg.Connection | None = None
        self._held = False

    async def held(self) -> bool:
        import asyncpg

        if self._connection is None or self._connection.is_closed():
            self._held = False
            try:
                self._connection = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot reach PostgreSQL for the pruning lease (%s: %s); not pruning this round",
                            type(exc).__name__, exc)
                self._connection = None
                return False
        if not self._held:
            try:
                self._held = bool(await self._connection.fetchval("SELECT pg_try_advisory_lock(hashtext($1))",
                                                                  self._name))
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("pruning lease not tried (%s: %s)", type(exc).__name__, exc)
                await self.close()
                return False
            if self._held:
                log.info("this controller prunes the event log (%s)", self._name)
        return self._held

    async def close(self) -> None:
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            await connection.close()


@contextlib.asynccontextmanager
async def running_pruner(config: HubConfig, store: Store, *, lease: PruningLease | None = None) -> AsyncIterator[EventPruner]:
    """A pruner running until the block ends (with `lease`: only while it holds the lease)."""
    pruner = EventPruner(store, config.events, leading=None if lease is None else lease.held)
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(pruner.run_until(stop))
            try:
                yield pruner
            finally:
                stop.set()
    finally:
        if lease is not None:
            await lease.close()


def cluster_lease(config: HubConfig, url: str) -> PruningLease:
    return PruningLease(url.replace("postgresql+asyncpg://", "postgresql://", 1),
                        f"triggerhub event pruning {config.kafka.topic_prefix}")
