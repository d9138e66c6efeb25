"""Blocks every process's composition shares: the action pool, and the task that reaps it.

`running_hub` (cli/compose.py) and `running_invoker` (cli/distributed.py) both run actions; they
build their pool here, so both clean up the same way and take the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from triggerhub.config import HubConfig
from triggerhub.invoker.base import RuntimeFactory
from triggerhub.invoker.pool import ContainerPool, PoolConfig

log = logging.getLogger(__name__)
REAP_INTERVAL_S = 1.0


async def action_pool(config: HubConfig, runtime: RuntimeFactory, *, left_by: str) -> ContainerPool:
    """A pool over `runtime` once the runtimes an earlier process (`left_by`) left are removed."""
    removed = await runtime.cleanup_orphans()
    if removed:
        log.info("removed %d runtimes left by %s", removed, left_by)
    return ContainerPool(runtime, PoolConfig(
        prewarm_count=config.runtime.prewarm_count, pause_grace_s=config.runtime.pause_grace_s,
        idle_timeout_s=config.runtime.idle_timeout_s, memory_budget_mb=config.runtime.memory_budget_mb))


async def reap_until(pool: ContainerPool, stop: asyncio.Event) -> None:
    """Pause and remove idle runtimes every REAP_INTERVAL_S until `stop` is set."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REAP_INTERVAL_S):
                await stop.wait()
        if not stop.is_set():
            await pool.reap()
