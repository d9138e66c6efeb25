"""The Faust app of distributed mode's workers: a consumer group that runs a handler per batch.

`batch_app(config, group, topic, handler, max_batch, within_s)` builds an app whose one agent
awaits `handler(messages)` for up to `max_batch` messages at a time and only then asks for the
next batch. Faust acks a message when its agent asks for the next, and commits only offsets
below which every message is acked, so a crash mid-handler leaves the batch uncommitted and
another member of the group gets it again. The app has no web server; tables are added by
bus/keyed.py;
`running(app)` starts it inside the caller's loop. (Invokers and the feeds process use
bus/group.py instead: messages concurrently, without Faust.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import faust

from triggerhub.config import KafkaConfig

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[tuple[str, bytes]]], Awaitable[None]]

HEARTBEAT_FRACTION = 3  # heartbeat at a third of the session timeout, as Kafka advises
JOIN_POLL_S = 0.1
LEADER_TOPIC_SUFFIX = "__assignor-__leader"  # Faust's own single-partition topic in every group


def batch_app(config: KafkaConfig, group: str, topic: str, handler: BatchHandler, *, max_batch: int,
              within_s: float, datadir: Path) -> faust.App:
    """One agent handling up to `max_batch` messages gathered for at most `within_s` at once, in
    topic order; the whole batch is acked after `handler` returned."""
    app, source = _app(config, group, topic, datadir)

    async def agent(stream: Any) -> None:
        async for events in stream.take_events(max_batch, within=within_s):
            await handler([(_key(e.message.key), e.message.value) for e in events])

    app.agent(source, name=f"{group}.handle_batch", concurrency=1)(agent)
    return app


def _key(raw: bytes | None) -> str:
    return raw.decode() if raw else ""


def _app(config: KafkaConfig, group: str, topic: str, datadir: Path) -> tuple[faust.App, Any]:
    session_s = config.session_timeout_ms / 1000
    app = faust.App(
        group, broker=f"kafka://{config.bootstrap}", web_enabled=False, autodiscover=False,
        datadir=str(datadir), store="memory://", topic_partitions=config.partitions,
        broker_session_timeout=session_s, broker_heartbeat_interval=session_s / HEARTBEAT_FRACTION,
        broker_rebalance_timeout=max(session_s, 10.0), broker_commit_interval=config.commit_interval_ms / 1000,
        broker_commit_every=1, consumer_auto_offset_reset="earliest", producer_acks=-1, producer_linger=0.0,
        # At revocation Faust would wait, without bound, for every message in flight to be acked;
        # a member could then stay in a rebalance that never completed (faust-streaming issue
        # #133). Not waiting is safe here: what was not acked is not committed and its next owner
        # handles it again, which the handlers tolerate (event and activation ids settle repeats).
        stream_wait_empty=False,
        table_standby_replicas=0,  # tables (bus/keyed.py) live in memory, read back from their changelogs
    )
    return app, app.topic(topic, key_serializer="raw", value_serializer="raw", partitions=config.partitions)


@contextlib.asynccontextmanager
async def running(app: faust.App, *, join_timeout_s: float) -> AsyncIterator[faust.App]:
    """Start the app and wait until its consumer group gave it partitions (the group may be
    shared with busier members, so running without any after `join_timeout_s` is only logged)."""
    await app.start()
    try:
        try:
            async with asyncio.timeout(join_timeout_s):
                while not assigned_partitions(app):
                    await asyncio.sleep(JOIN_POLL_S)
        except TimeoutError:
            log.warning("%s: no partitions assigned after %.0f s; consuming once the group rebalances",
                        app.conf.id, join_timeout_s)
        yield app
    finally:
        await app.stop()


def assigned_partitions(app: faust.App) -> int:
    """Partitions of the app's source topic currently assigned to this process."""
    try:
        assignment = app.consumer.assignment()
    except (AttributeError, RuntimeError):  # the consumer is not started yet
        return 0
    return sum(1 for tp in assignment if not tp.topic.endswith(LEADER_TOPIC_SUFFIX))
