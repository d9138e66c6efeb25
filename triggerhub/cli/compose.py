"""The composition root: picks the store, runtime and feeds from config and wires the hub.

Nothing else in triggerhub constructs adapters. `running_hub()` is used by `triggerhub up` and,
with an ephemeral port, by the tests and by `triggerhub deploy` without `--apihost`.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from triggerhub.api.app import create_app
from triggerhub.api.hooks import webhook_routes
from triggerhub.api.status import status_routes
from triggerhub.cli.health import embedded_probes
from triggerhub.api.tls import listener_tls
from triggerhub.config import HubConfig, RuntimeChoice
from triggerhub.engine.bootstrap import ensure_subjects, ensure_system_packages
from triggerhub.engine.core import Engine
from triggerhub.engine.dispatch import LocalDispatcher
from triggerhub.engine.entities import Entities
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.cli.pruning import running_pruner
from triggerhub.engine.feed_manager import catalogue
from triggerhub.errors import ConfigError
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import RuntimeFactory
from triggerhub.cli.wiring import action_pool, engine_and_feeds, observed, reap_until, serving
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.invoker.sandbox import find_sandbox
from triggerhub.observe import otel
from triggerhub.store.sql import SqlStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hub:
    engine: Engine
    config: HubConfig
    credentials: dict[str, str]
    apihost: str
    runtime_name: str

    @property
    def guest_auth(self) -> str:
        return self.credentials["guest"]


def docker_status(docker_host: str) -> str | None:
    """None when a Docker engine answers and has the runtime images; else why not."""
    try:
        import docker

        from triggerhub.invoker.images import IMAGE_FOR_KIND

        client = docker.DockerClient(base_url=docker_host, timeout=2)
        try:
            client.ping()
            missing = [tag for tag in IMAGE_FOR_KIND.values() if not client.images.list(name=tag)]
        finally:
            client.close()
    except Exception as exc:  # any failure to reach the engine means "no Docker": fall back to processes
        return f"no Docker engine answers ({type(exc).__name__})"
    if missing:
        return f"the runtime images are missing ({', '.join(missing)}); build them with `triggerhub images build`"
    return None


def choose_runtime(config: HubConfig) -> tuple[str, RuntimeFactory]:
    choice = config.runtime.choice
    problem = docker_status(config.runtime.docker_host) if choice is RuntimeChoice.AUTO else None
    if choice is RuntimeChoice.DOCKER or (choice is RuntimeChoice.AUTO and problem is None):
        try:
            from triggerhub.invoker.docker import DockerRuntimeFactory
        except ImportError as exc:
            raise ConfigError(f"TRIGGERHUB_RUNTIME=docker: the Docker runtime cannot load ({exc})") from exc
        # One hub id per home: a restarted hub removes its own orphans and nobody else's.
        hub_id = "h" + hashlib.sha1(str(config.home.resolve()).encode()).hexdigest()[:10]
        # Sockets live under the home, whose path a containerised invoker shares with the host
        # engine (deploy/docker-compose.yml); a home too deep for Unix socket paths uses /tmp.
        socket_root = config.home.resolve() / "sockets"
        if len(str(socket_root)) > 60:
            socket_root = Path(tempfile.gettempdir()) / f"triggerhub-{hub_id}"
        return "docker", DockerRuntimeFactory(hub_id=hub_id, docker_host=config.runtime.docker_host,
                                              socket_root=socket_root)
    sandbox = find_sandbox(config.runtime)  # refuses unsandboxed actions as root unless allowed
    if choice is RuntimeChoice.AUTO:
        log.warning("%s: actions run as local processes%s", problem,
                    " in a bubblewrap sandbox" if sandbox else ", NOT isolated from this machine")
    return "process", ProcessRuntimeFactory(runtimes_dir=config.runtime.runtimes_dir, node=config.runtime.node_binary,
                                            sandbox=sandbox)


@contextlib.asynccontextmanager
async def running_hub(config: HubConfig, *, runtime: RuntimeFactory | None = None,
                      runtime_name: str = "custom") -> AsyncIterator[Hub]:
    """The embedded hub: store, action pool, engine, feeds and API in this process; everything is
    closed in the reverse order when the block ends."""
    tls = listener_tls(config.api)
    if runtime is None:  # first: a refused runtime (e.g. unsandboxed as root) leaves no trace
        runtime_name, runtime = choose_runtime(config)
    config.home.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_opened_store(config))
        credentials = await ensure_subjects(store, config.home)
        pool = await action_pool(config, runtime, left_by="an earlier hub")
        stack.push_async_callback(pool.close)
        # Another process may write entities to the same store (a second hub, `triggerhub deploy`
        # without a running hub): every cached read checks the store's entity generation.
        entities = Entities(store, config.limits, max_code_bytes=config.api.max_code_bytes,
                            generation=store.get_entity_generation, revalidate_reads=True)
        engine, feeds = engine_and_feeds(store, lambda builtin: Engine(
            config=config, store=store, invoker=ActionInvoker(pool), entities=entities,
            dispatcher=LocalDispatcher(store), builtin=builtin, derive_loop=True))
        await ensure_system_packages(engine.entities, catalogue(FEED_KINDS))
        observed(config, role="hub", pool=pool, running=lambda: engine.dispatcher.statistics().to_json()["running"])
        stack.callback(otel.shutdown)  # exports the spans still buffered, once everything has stopped
        await stack.enter_async_context(engine)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        await pool.start()
        stop_reaping = asyncio.Event()
        stack.callback(stop_reaping.set)
        tasks.create_task(reap_until(pool, stop_reaping))
        tasks.create_task(engine.deliveries.pump(stop_reaping))  # waiting retries, durable in the store
        await stack.enter_async_context(running_pruner(config, store))
        await feeds.start(tasks)
        probes = embedded_probes(engine, store, pool, feeds, runtime_name)
        app = create_app(engine, webhook_routes(feeds) + status_routes("embedded", probes))
        apihost = await stack.enter_async_context(serving(app, config.api, tls))
        stack.push_async_callback(feeds.stop)  # first of all: no event arrives once the hub is closing
        yield Hub(engine, config, credentials, apihost, runtime_name)


@contextlib.asynccontextmanager
async def _opened_store(config: HubConfig) -> AsyncIterator[SqlStore]:
    store = SqlStore(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
