"""Blocks the processes' compositions share, so each composition reads top to bottom.

`running_hub` (cli/compose.py) and `running_invoker` (cli/distributed.py) both run actions; they
build their pool here, so both clean up the same way and take the same settings. The hub and the
distributed `feeds` process tie the engine and the feed manager together with `engine_and_feeds`;
the hub and the controller serve the API with `serving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from triggerhub.api.tls import scheme
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.config import ApiConfig, HubConfig
from triggerhub.engine.core import BuiltinHandler, Engine
from triggerhub.engine.feed_manager import FeedLeases, FeedManager, LeaseTiming
from triggerhub.invoker.base import RuntimeFactory
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.model import TriggerEvent
from triggerhub.store.base import Store

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


def engine_and_feeds(store: Store, build_engine: Callable[[BuiltinHandler], Engine], *,
                     instance_id: str = "hub", leases: FeedLeases | None = None,
                     lease_timing: LeaseTiming | None = None) -> tuple[Engine, FeedManager]:
    """The engine and the feed manager, which need each other: the manager fires through the
    engine, and the engine runs the manager's feed actions (`builtin`). The manager gets a fire
    that finds the engine when it is called, so both are complete when their constructors return."""
    engine: Engine

    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        return await engine.emit(event, cursor)

    feeds = FeedManager(store, fire, kinds=FEED_KINDS, forget=lambda deleted: engine.entities.forget(deleted),
                        instance_id=instance_id, leases=leases, lease_timing=lease_timing)
    engine = build_engine(feeds.run_builtin)
    return engine, feeds


@contextlib.asynccontextmanager
async def serving(app: web.Application, api: ApiConfig, tls: ssl.SSLContext | None) -> AsyncIterator[str]:
    """`app` served on api.host:api.port until the block ends; yields the apihost (with the port
    actually bound when api.port is 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, api.host, api.port, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        yield f"{scheme(tls)}://{api.host}:{port}"
    finally:
        await runner.cleanup()
