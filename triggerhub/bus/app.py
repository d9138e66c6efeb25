"""The Faust app of distributed mode's workers: a consumer group that runs a handler per batch.

`batch_app(config, group, topic, handler, max_batch, within_s)` builds an app whose one agent
awaits `handler(messages)` for up to `max_batch` messages at a time and only then asks for the
next batch. Faust acks a message when its agent asks for the next, and commits only offsets
below which every message is acked, so a crash mid-handler leaves the batch uncommitted and
another member of the group gets it again. The app has no web server; tables are added by
bus/keyed.py;
`running(app)` starts it inside the caller's loop. (Invokers and the feeds process use
bus/group.py instead: messages concurrently, without Faust.)

The app's consumer repairs one Faust/aiokafka mismatch (`seek_to_committed` below): records
fetched while a rebalance is under way are dropped, and Faust then seeks every partition back
to its committed offset, but aiokafka seeks only to a committed offset above 0, so a partition
nobody committed yet lost what was fetched (a killed worker's partitions, never consumed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

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
    app = _App(
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


async def seek_to_committed(consumer: AIOKafkaConsumer, *, streams: Callable[[TopicPartition], bool],
                            ) -> dict[TopicPartition, int | None]:
    """Every assigned partition at its committed offset; a stream partition without one (or at 0)
    at its beginning, as `consumer_auto_offset_reset="earliest"` means.

    aiokafka's own `seek_to_committed` leaves a partition whose committed offset is None or 0
    where its fetcher got to. Faust relies on that seek after a rebalance, having dropped the
    records fetched for partitions it had paused meanwhile (recovery of a table, a revocation),
    so without this those records were never handed to any agent: the uncommitted messages of
    a killed worker's partitions, taken over by a running one, stayed unconsumed for good.
    Changelog partitions (`streams` false) are left alone: table recovery seeks them itself."""
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed()
    from_start = sorted((tp for tp, offset in committed.items() if not offset and streams(tp)),
                        key=lambda tp: (tp.topic, tp.partition))
    if from_start:
        log.info("partitions %s have no committed offset: read from their beginning",
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in from_start))
        await consumer.seek_to_beginning(*from_start)
    return committed


_FAUST_LOG = logging.getLogger("faust.triggerhub")
"""Faust's services log under their class's module; these subclasses log under "faust", like their bases."""


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    logger = _FAUST_LOG

    async def seek_to_committed(self) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        changelogs = self.app.tables.changelog_topics
        committed: Mapping[Any, int] = await self.call_thread(seek_to_committed, consumer,
                                                              streams=lambda tp: tp.topic not in changelogs)
        return committed


class _Consumer(faust_aiokafka.Consumer):
    logger = _FAUST_LOG

    async def perform_seek(self) -> None:
        """Stop the flow first: records fetched before the seek, still being handed to the streams,
        would run past the committed offset, and Faust would count the offsets skipped as a gap
        (acked, never handled) and drop them as already read when they come again (as in
        faust-streaming issue #216). Every caller resumes the flow once the seek is done."""
        self.stop_flow()
        await super().perform_seek()

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    """A Faust app whose Kafka consumer seeks as `seek_to_committed` says."""

    logger = _FAUST_LOG

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


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
