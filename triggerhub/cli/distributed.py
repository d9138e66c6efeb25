"""Composition of distributed mode: `triggerhub controller | worker | invoker --id N`.

Every process opens the PostgreSQL store and the Kafka topics (prefix TRIGGERHUB_KAFKA_TOPIC_PREFIX)
and nothing else it does not need. Each role scales by starting more of it: workers and invokers
share one consumer group per role; each controller has its own id and completions topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from triggerhub.api.admin import admin_routes
from triggerhub.api.app import create_app
from triggerhub.api.status import status_routes
from triggerhub.cli.health import distributed_probes
from triggerhub.api.hooks import webhook_routes
from triggerhub.api.tls import listener_tls
from triggerhub.bus.app import batch_app, running
from triggerhub.bus.group import GroupMember
from triggerhub.bus.keyed import keyed_state
from triggerhub.bus.producer import KafkaPublisher
from triggerhub.bus.tail import Tail
from triggerhub.bus.topics import Topics, ensure_topics
from triggerhub.cli.tls import tls_options, tls_overrides
from triggerhub.cli.collector import freeze_start_up_objects
from triggerhub.cli.logs import log_to_file
from triggerhub.config import DeriveState, HubConfig, load_config
from triggerhub.engine.bootstrap import ensure_subjects, ensure_system_packages
from triggerhub.engine.core import BuiltinHandler, Engine
from triggerhub.engine.derive import IDLE_S, SHARED_IDLE_S
from triggerhub.engine.entities import Entities
from triggerhub.cli.pruning import cluster_lease, running_pruner
from triggerhub.engine.retention import EventPruner
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.engine.feed_manager import FeedManager, LeaseTiming, catalogue
from triggerhub.engine.republish import RepublishSweep
from triggerhub.engine.derive_table import TICK, DeriveRouter, TableDeriver
from triggerhub.engine.distributed import (
    CompletionWaiter, HealthMonitor, InvokerService, InvokerStatistics, KafkaDispatcher, NoLocalRuns, Publisher, WorkerService,
    heartbeat,
)
from triggerhub.errors import ConfigError, TriggerhubError
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import Invoker, RuntimeFactory
from triggerhub.cli.compose import choose_runtime
from triggerhub.cli.props import write_props
from triggerhub.cli.wiring import action_pool, engine_and_feeds, observed, reap_until, serving
from triggerhub.observe import otel
from triggerhub.observe.exposition import serving_metrics
from triggerhub.model import now_ms
from triggerhub.store.leases import SqlFeedLeases
from triggerhub.store.base import DeriveNotices
from triggerhub.store.notify import PgDeriveNotices
from triggerhub.store.sql import SqlStore

log = logging.getLogger(__name__)

# A worker takes the events that arrived within a few ms as one batch and matches them
# concurrently (their store writes share commits); events of one ordering key (engine/ordering.py)
# one after another in topic order. The batch size bounds the concurrency.
WORKER_MAX_BATCH = 256
WORKER_BATCH_WITHIN_S = 0.005
# Entities are written by controllers and read everywhere: a worker caches them and revalidates
# its cache against the store's entity generation once per batch of events (so an event fired
# after a write committed is matched with what was written); invokers always read the store; a
# controller trusts its cache for this long (it drops an entry at once when it writes it). The
# worker's entries also age out after WORKER_CACHE_TTL_S, for its derived triggers' loop, which
# reads entities between batches.
CONTROLLER_CACHE_TTL_S = 1.0
WORKER_CACHE_TTL_S = 1.0
FEED_LIFECYCLE_CONCURRENCY = 4
# How often a worker looks for due keys of derived triggers in its table (absence deadlines).
DERIVE_TICK_S = 0.2
DERIVE_TABLE = "derive-state"


@dataclass(frozen=True, slots=True)
class Controller:
    apihost: str
    credentials: dict[str, str]
    health: HealthMonitor
    engine: Engine
    pruner: EventPruner  # prunes the event log while this controller holds the cluster's pruning lease

    @property
    def guest_auth(self) -> str:
        return self.credentials["guest"]


def require_postgres(config: HubConfig) -> str:
    url = config.store.url
    if not url.startswith(("postgresql://", "postgresql+asyncpg://")):
        shown = url.split("://", 1)[0] + "://..." if url else "unset (SQLite under TRIGGERHUB_HOME)"
        raise ConfigError(f"distributed mode needs PostgreSQL: TRIGGERHUB_STORE_URL is {shown}; "
                          "set it to postgresql+asyncpg://user:password@host:port/database "
                          "(SQLite cannot be shared by several processes and machines)")
    return url


@contextlib.asynccontextmanager
async def _opened_store(config: HubConfig) -> AsyncIterator[SqlStore]:
    store = SqlStore(require_postgres(config))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _engine(config: HubConfig, store: SqlStore, publisher: Publisher, topics: Topics, *,
            invoker: Invoker | None = None, cache_ttl_s: float | None = 0.0, revalidated: bool = False,
            waiter: CompletionWaiter | None = None, reply_to: str | None = None,
            builtin: BuiltinHandler | None = None, dispatcher: KafkaDispatcher | None = None,
            derive_loop: bool = False, derive_idle_s: float = IDLE_S,
            derive_notices: DeriveNotices | None = None) -> Engine:
    """An engine whose dispatcher publishes to Kafka; it runs actions only with an `invoker`, and
    the derived triggers' loop with `derive_loop` (workers). `revalidated`: its entity cache is
    dropped by `entities.revalidate()` when any process wrote an entity (cache_ttl_s=None then
    keeps entries until that happens)."""
    in_table = config.kafka.derive_state is DeriveState.TABLE
    return Engine(config=config, store=store, invoker=invoker or NoLocalRuns(), builtin=builtin, derive_loop=derive_loop,
                  route_derive=DeriveRouter(publisher, topics.derive_keys) if in_table else None,
                  derive_idle_s=derive_idle_s, derive_notices=derive_notices,
                  entities=Entities(store, config.limits, max_code_bytes=config.api.max_code_bytes,
                                    cache_ttl_s=cache_ttl_s,
                                    generation=store.get_entity_generation if revalidated else None),
                  dispatcher=dispatcher or KafkaDispatcher(store, publisher, topics, waiter=waiter, reply_to=reply_to))


def _all_topics(config: HubConfig, topics: Topics) -> list[str]:
    return [topics.trigger_events, topics.invocations, topics.feed_invocations, topics.health,
            topics.derive_keys, topics.completed(config.kafka.controller_id)]


@contextlib.asynccontextmanager
async def running_controller(config: HubConfig) -> AsyncIterator[Controller]:
    """The API: fires and invocations go to Kafka; completions and heartbeats come back from it."""
    tls = listener_tls(config.api)
    topics = Topics(config.kafka.topic_prefix)
    partitions = await ensure_topics(config.kafka, _all_topics(config, topics))
    reply_to = topics.completed(config.kafka.controller_id)
    waiter = CompletionWaiter()
    health = HealthMonitor(config.kafka.healthy_timeout_ms)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_opened_store(config))
        credentials = await ensure_subjects(store, config.home)
        publisher = await stack.enter_async_context(KafkaPublisher(config.kafka, client_id=f"controller{config.kafka.controller_id}"))
        dispatcher = KafkaDispatcher(store, publisher, topics, waiter=waiter, reply_to=reply_to)
        engine = _engine(config, store, publisher, topics, cache_ttl_s=CONTROLLER_CACHE_TTL_S, dispatcher=dispatcher)
        sweep = RepublishSweep(dispatcher, store, started_ms=now_ms(), where=f"controller{config.kafka.controller_id}")
        await ensure_system_packages(engine.entities, catalogue(FEED_KINDS))
        # Webhook deliveries are matched and stored here (202 once durable); the feeds process
        # runs the feeds that pull or listen, and the feed lifecycle actions.
        counters = await stack.enter_async_context(_feed_leases(config, owner=f"controller{config.kafka.controller_id}"))
        webhooks = FeedManager(store, engine.emit, kinds=FEED_KINDS, forget=engine.entities.forget, leases=counters)
        completions = Tail(config.kafka, {reply_to: partitions[reply_to]}, waiter.on_message, since_ms=now_ms())
        heartbeats = Tail(config.kafka, {topics.health: partitions[topics.health]}, health.on_message,
                          since_ms=now_ms() - config.kafka.healthy_timeout_ms)
        readers = await stack.enter_async_context(_reading(completions, heartbeats))
        sweeps = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(sweeps.create_task(sweep.run(), name="republish sweep").cancel)
        pruner = await stack.enter_async_context(running_pruner(config, store,
                                                                lease=cluster_lease(config, require_postgres(config))))
        await stack.enter_async_context(engine)
        stack.callback(readers.cancel)  # before the engine closes, as the API stops
        probes = distributed_probes(engine, store, health, config.kafka, topics)
        observed(config, role="controller", lag_groups=_lag_groups(topics))
        app = create_app(engine, admin_routes(health) + webhook_routes(webhooks) + status_routes("distributed", probes))
        apihost = await stack.enter_async_context(serving(app, config.api, tls))
        yield Controller(apihost, credentials, health, engine, pruner)


@dataclass(frozen=True, slots=True)
class _Readers:
    tasks: tuple[asyncio.Task[None], ...]

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


@contextlib.asynccontextmanager
async def _reading(*tails: Tail) -> AsyncIterator[_Readers]:
    """Each tail opened and read in a task of its own; the tasks are awaited when the block ends
    (cancel them first with the `_Readers` yielded)."""
    async with contextlib.AsyncExitStack() as stack:
        for tail in tails:
            await stack.enter_async_context(tail)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        yield _Readers(tuple(tasks.create_task(tail.run()) for tail in tails))


@contextlib.asynccontextmanager
async def running_worker(config: HubConfig) -> AsyncIterator[WorkerService]:
    topics = Topics(config.kafka.topic_prefix)
    await ensure_topics(config.kafka, _all_topics(config, topics))
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_opened_store(config))
        publisher = await stack.enter_async_context(KafkaPublisher(config.kafka, client_id="worker"))
        # Derived state in the store: other processes' changes come as PostgreSQL notices, so an
        # idle loop looks at the store every IDLE_S only (SHARED_IDLE_S while the notices are lost).
        # In the Faust table (the default) the store holds no derived state for the loop to wait
        # on: it looks every IDLE_S only, for rows left from running with the store.
        in_store = config.kafka.derive_state is DeriveState.STORE
        engine = _engine(config, store, publisher, topics, cache_ttl_s=WORKER_CACHE_TTL_S, revalidated=True,
                         derive_loop=True, derive_idle_s=SHARED_IDLE_S if in_store else IDLE_S,
                         derive_notices=PgDeriveNotices(require_postgres(config)) if in_store else None)
        await stack.enter_async_context(engine)
        service = WorkerService(engine.emit, topics.trigger_events, revalidate=engine.entities.revalidate)
        observed(config, role="worker", lag_groups={topics.app_id("worker"): topics.trigger_events})
        await stack.enter_async_context(_metrics_listener(config))
        # Workers start due retries (each claimed by one worker under a lease) by publishing them.
        stop = asyncio.Event()
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(stop.set)
        tasks.create_task(engine.deliveries.pump(stop))
        app = batch_app(config.kafka, topics.app_id("worker"), topics.trigger_events, service.handle_batch,
                        max_batch=WORKER_MAX_BATCH, within_s=WORKER_BATCH_WITHIN_S, datadir=_datadir(config, "worker"))

        async def relisten(*_args: Any, **_kwargs: Any) -> None:  # derived triggers' absence deadlines
            engine.deriver.relisten()

        app.on_partitions_assigned.connect(relisten)
        if config.kafka.derive_state is DeriveState.TABLE:
            table = TableDeriver(engine.deriver, engine.fire_derived)
            keyed_state(app, topics.derive_keys, table=DERIVE_TABLE, partitions=config.kafka.partitions,
                        step=table.step, due=table.due, tick=TICK, interval_s=DERIVE_TICK_S)
        await stack.enter_async_context(running(app, join_timeout_s=_join_timeout_s(config)))
        yield service


@contextlib.asynccontextmanager
async def running_invoker(config: HubConfig, invoker_id: int, runtime: RuntimeFactory | None = None) -> AsyncIterator[InvokerService]:
    name = f"invoker{invoker_id}"
    topics = Topics(config.kafka.topic_prefix)
    await ensure_topics(config.kafka, _all_topics(config, topics))
    if runtime is None:
        _, runtime = choose_runtime(config)
    pool = await action_pool(config, runtime, left_by="an invoker that died")
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_opened_store(config))
        publisher = await stack.enter_async_context(KafkaPublisher(config.kafka, client_id=name))
        engine = _engine(config, store, publisher, topics, invoker=ActionInvoker(pool))
        await stack.enter_async_context(engine)
        stack.push_async_callback(pool.close)
        await pool.start()
        service = InvokerService(name, store, engine.execute, publisher, topics.invocations)
        observed(config, role=name, pool=pool, running=lambda: service.statistics().running,
                 lag_groups={topics.app_id("invokers"): topics.invocations})
        await stack.enter_async_context(_metrics_listener(config))
        member = GroupMember(config.kafka, topics.app_id("invokers"), topics.invocations, service.handle,
                             concurrency=config.kafka.invoker_concurrency, client_id=name)
        stop = asyncio.Event()
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(stop.set)
        await stack.enter_async_context(member.running(join_timeout_s=_join_timeout_s(config)))
        tasks.create_task(heartbeat(name, publisher, topics.health, config.kafka.heartbeat_interval_ms,
                                    _with_partitions(service.statistics, member), stop))
        tasks.create_task(reap_until(pool, stop))
        yield service


def _feed_leases(config: HubConfig, *, owner: str) -> SqlFeedLeases:
    """Feed leases and counters in the hub's PostgreSQL (store/leases.py); `owner` names this process."""
    return SqlFeedLeases(require_postgres(config), owner=owner, lease_ms=config.feeds.lease_ms)


def _lease_timing(config: HubConfig) -> LeaseTiming:
    return LeaseTiming(renew_s=config.feeds.lease_renew_ms / 1000, lease_s=config.feeds.lease_ms / 1000)


@contextlib.asynccontextmanager
async def running_feeds(config: HubConfig) -> AsyncIterator[InvokerService]:
    topics = Topics(config.kafka.topic_prefix)
    await ensure_topics(config.kafka, _all_topics(config, topics))
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_opened_store(config))
        owner = f"feeds@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        leases = await stack.enter_async_context(_feed_leases(config, owner=owner))
        publisher = await stack.enter_async_context(KafkaPublisher(config.kafka, client_id="feeds"))
        dispatcher = KafkaDispatcher(store, publisher, topics)
        engine, feeds = engine_and_feeds(store, lambda builtin: _engine(config, store, publisher, topics,
                                                                        builtin=builtin, dispatcher=dispatcher),
                                         instance_id="feeds", leases=leases, lease_timing=_lease_timing(config))
        await stack.enter_async_context(engine)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        sweep = tasks.create_task(RepublishSweep(dispatcher, store, started_ms=now_ms(), where="feeds").run())
        stack.callback(sweep.cancel)
        stack.push_async_callback(feeds.stop)
        await feeds.start(tasks)
        service = InvokerService("feeds", store, engine.execute, publisher, topics.feed_invocations)
        observed(config, role="feeds", running=lambda: service.statistics().running,
                 lag_groups={topics.app_id("feeds"): topics.feed_invocations})
        await stack.enter_async_context(_metrics_listener(config))
        member = GroupMember(config.kafka, topics.app_id("feeds"), topics.feed_invocations, service.handle,
                             concurrency=FEED_LIFECYCLE_CONCURRENCY, client_id="feeds")
        await stack.enter_async_context(member.running(join_timeout_s=_join_timeout_s(config)))
        yield service


def _lag_groups(topics: Topics) -> dict[str, str]:
    """Every consumer group of the hub -> its topic (the controller's /metrics shows them all)."""
    return {topics.app_id("worker"): topics.trigger_events, topics.app_id("invokers"): topics.invocations,
            topics.app_id("feeds"): topics.feed_invocations}


def _metrics_listener(config: HubConfig) -> contextlib.AbstractAsyncContextManager[int | None]:
    """/metrics of a process without the REST API, on 127.0.0.1 (TRIGGERHUB_METRICS_PORT)."""
    return serving_metrics(host=config.api.host, port=config.observe.metrics_port, token=config.observe.metrics_token)


def _with_partitions(statistics: Callable[[], InvokerStatistics], member: GroupMember) -> Callable[[], InvokerStatistics]:
    def snapshot() -> InvokerStatistics:
        return replace(statistics(), partitions=member.assigned_partitions())

    return snapshot


def _join_timeout_s(config: HubConfig) -> float:
    return 3 * config.kafka.session_timeout_ms / 1000


def _datadir(config: HubConfig, role: str) -> Path:
    path = config.home / "faust" / role
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------- click commands


def _load(overrides: dict[str, Any]) -> HubConfig:
    try:
        config = load_config(overrides=overrides)
        require_postgres(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    log_to_file(config.log)
    return config


def _serve(starting: Callable[[], contextlib.AbstractAsyncContextManager[Any]], ready: Callable[[Any], str]) -> None:
    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with starting() as started:
                click.echo(ready(started), nl=True)
                freeze_start_up_objects()
                await stop.wait()
        finally:
            otel.shutdown()  # exports the spans still buffered

    try:
        asyncio.run(serve())
    except TriggerhubError as exc:
        raise click.ClickException(str(exc)) from exc


def _logging(*, verbose: bool) -> None:
    from triggerhub.cli import _configure_logging

    _configure_logging(verbose=verbose)
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _controller_ready(controller: Controller, config: HubConfig) -> str:
    """The ready line; the CLI finds this controller from any folder, as after `triggerhub up`
    (unless TRIGGERHUB_WRITE_PROPS=false)."""
    if config.write_props:
        write_props(controller.apihost, controller.guest_auth, home=config.home)
    return f"triggerhub controller listening on {controller.apihost}"


@click.command()
@click.option("--id", "controller_id", type=int, default=None, help="controller id (completions topic completed<ID>)")
@click.option("--port", type=int, default=None, help="API port (default 3233)")
@click.option("--host", default=None, help="bind address (default 127.0.0.1)")
@tls_options
@click.option("-v", "--verbose", is_flag=True)
def controller(controller_id: int | None, port: int | None, host: str | None, tls_cert: Path | None,
               tls_key: Path | None, verbose: bool) -> None:
    """Serve the REST API; publish fires and invocations to Kafka (distributed mode)."""
    _logging(verbose=verbose)
    config = _load({"CONTROLLER_ID": controller_id, "PORT": port, "HOST": host, **tls_overrides(tls_cert, tls_key)})
    _serve(lambda: running_controller(config), lambda c: _controller_ready(c, config))


_METRICS_PORT = click.option("--metrics-port", type=int, default=None,
                             help="serve /metrics on 127.0.0.1:PORT (TRIGGERHUB_METRICS_PORT; default: none)")


@click.command()
@_METRICS_PORT
@click.option("-v", "--verbose", is_flag=True)
def worker(metrics_port: int | None, verbose: bool) -> None:
    """Match fired trigger events against rules and publish the invocations (distributed mode)."""
    _logging(verbose=verbose)
    config = _load({"METRICS_PORT": metrics_port})
    _serve(lambda: running_worker(config), lambda _: "triggerhub worker consuming trigger events")


@click.command()
@click.option("--id", "invoker_id", type=int, required=True, help="invoker id N (reported as invokerN)")
@click.option("--runtime", type=click.Choice(["auto", "docker", "process"]), default=None)
@_METRICS_PORT
@click.option("-v", "--verbose", is_flag=True)
def invoker(invoker_id: int, runtime: str | None, metrics_port: int | None, verbose: bool) -> None:
    """Run invocations from Kafka in the container pool and record them (distributed mode)."""
    _logging(verbose=verbose)
    config = _load({"RUNTIME": runtime, "METRICS_PORT": metrics_port})
    _serve(lambda: running_invoker(config, invoker_id), lambda s: f"triggerhub {s.name} consuming invocations")


@click.command()
@_METRICS_PORT
@click.option("-v", "--verbose", is_flag=True)
def feeds(metrics_port: int | None, verbose: bool) -> None:
    """Run feeds and feed lifecycle actions; any number of these processes share the feeds by leases."""
    _logging(verbose=verbose)
    config = _load({"METRICS_PORT": metrics_port})
    _serve(lambda: running_feeds(config), lambda _: "triggerhub feeds running")


COMMANDS = (controller, worker, invoker, feeds)


@click.group()
def distributed() -> None:
    """Distributed mode's processes (also available as `triggerhub <command>`)."""


for _command in COMMANDS:
    distributed.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    distributed()
