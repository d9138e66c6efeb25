"""Blocks the processes' compositions share, so each composition reads top to bottom.

`running_hub` (cli/compose.py) and `running_invoker` (cli/distributed.py) both run actions; they
build their pool here, so both clean up the same way and take the same settings. The hub and the
distributed `feeds` process tie the engine and the feed manager together with `engine_and_feeds`;
the hub and the controller serve the API with `serving`; every process points its /metrics at its
parts with `observed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

from triggerhub.api.tls import scheme
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.config import ApiConfig, HubConfig, KafkaConfig, PrewarmChoice
from triggerhub.engine.core import BuiltinHandler, Engine
from triggerhub.engine.feed_manager import FeedLeases, FeedManager, LeaseTiming
from triggerhub.invoker.base import RuntimeFactory
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.model import TriggerEvent
from triggerhub.observe import metrics, otel
from triggerhub.store.base import Store

log = logging.getLogger(__name__)
REAP_INTERVAL_S = 1.0


async def action_pool(config: HubConfig, runtime: RuntimeFactory, *, left_by: str) -> ContainerPool:
    """A pool over `runtime` once the runtimes an earlier process (`left_by`) left are removed."""
    removed = await runtime.cleanup_orphans()
    if removed:
        log.info("removed %d runtimes left by %s", removed, left_by)
    return ContainerPool(runtime, PoolConfig(
        prewarm_count=config.runtime.prewarm_count, prewarm_at_start=config.runtime.prewarm is PrewarmChoice.START,
        pause_grace_s=config.runtime.pause_grace_s,
        idle_timeout_s=config.runtime.idle_timeout_s, memory_budget_mb=config.runtime.memory_budget_mb))


async def reap_until(pool: ContainerPool, stop: asyncio.Event) -> None:
    """Pause and remove idle runtimes every REAP_INTERVAL_S until `stop` is set."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REAP_INTERVAL_S):
                await stop.wait()
        if not stop.is_set():
            await pool.reap()


def observed(config: HubConfig, *, role: str, pool: ContainerPool | None = None,
             running: Callable[[], int] | None = None, lag_groups: Mapping[str, str] | None = None) -> None:
    """Point this process's /metrics at its parts: the pool's runtimes by state, the activations
    running here (in flight), and the Kafka consumer lag of `lag_groups` (group id -> topic); and
    start the OpenTelemetry export if asked (`role` names the process: hub, controller, ...)."""
    metrics.configure(enabled=config.observe.metrics, max_names=config.observe.metrics_max_names)
    otel.configure(config.observe.otel if config.observe.lineage else "off", service=f"triggerhub-{role}")
    metrics.GAUGES.clear()
    if pool is not None:
        def runtimes() -> dict[tuple[str, ...], float]:
            stats = pool.statistics()
            return {("warm",): stats.warm, ("prewarm",): stats.prewarm, ("busy",): stats.busy,
                    ("paused",): stats.paused, ("starting",): stats.starting}

        metrics.GAUGES.read("triggerhub_pool_runtimes", "Runtimes in this process's container pool, by state",
                            ("state",), runtimes)
        metrics.GAUGES.read("triggerhub_pool_waiting_activations", "Activations waiting for room in the pool", (),
                            lambda: {(): pool.statistics().waiting})
        metrics.GAUGES.read("triggerhub_pool_memory_used_bytes", "Memory of the pool's action runtimes", (),
                            lambda: {(): pool.statistics().memory_used_mb * 1024 * 1024})
    if running is not None:
        read_running = running
        metrics.GAUGES.read("triggerhub_inflight_activations", "Activations running in this process now", (),
                            lambda: {(): read_running()})
    if lag_groups:
        metrics.GAUGES.refresh_with(_lag_refresher(config.kafka, dict(lag_groups)))


def _lag_refresher(kafka: KafkaConfig, groups: dict[str, str]) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        from triggerhub.bus.lag import consumer_lag  # aiokafka's admin client: loaded by Kafka processes only

        lags = await consumer_lag(kafka, groups)
        metrics.GAUGES.set_lag({(group, lag.topic): lag.lag for group, lag in lags.items()})

    return refresh


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
