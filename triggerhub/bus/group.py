"""A consumer-group member that handles messages concurrently and commits only what is handled.

`GroupMember(config, group, topic, handler, concurrency=N)` runs `handler(key, value)` for up to
N messages at once, from every partition the group gives it (aiokafka directly: no Faust). Per
partition it commits the offset below which every fetched message has been handled, so a crash,
`kill -9` included, leaves each unhandled message uncommitted and the group hands it out again.
A commit follows the first completion at once, then at most one per `commit_interval_ms`
(TRIGGERHUB_KAFKA_COMMIT_INTERVAL_MS, 500 ms): completions meanwhile share it, and a crash can
only cause more redeliveries, which the handlers tolerate.

When a rebalance takes partitions away, the member waits for their messages in flight (up to
`revoke_wait_s`), commits them, and only then lets the group go on, so the next owner starts
after them. The wait is bounded: Faust's unbounded wait for its streams to drain at revocation
(`stream_wait_empty`) could leave a member in a rebalance that never completed (faust-streaming
issue #133: "rebalance doesn't finish").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None]]

HEARTBEAT_FRACTION = 3  # heartbeat at a third of the session timeout, as Kafka advises
JOIN_POLL_S = 0.1
FETCH_TIMEOUT_MS = 500
FETCH_MAX_WAIT_MS = 100
MIN_REBALANCE_TIMEOUT_MS = 30_000
MAX_POLL_INTERVAL_MS = 3_600_000


@dataclass(slots=True)
class _Partition:
    """Offsets fetched from one partition and not yet committable, in fetch order."""

    fetched: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    position: int | None = None  # the next offset to read: everything below it is handled
    committed: int | None = None
    running: int = 0
    revoked: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def started(self, offset: int) -> None:
        self.fetched.append(offset)
        self.running += 1
        self.idle.clear()

    def finished(self, offset: int) -> None:
        self.done.add(offset)
        while self.fetched and self.fetched[0] in self.done:
            first = self.fetched.popleft()
            self.done.discard(first)
            self.position = first + 1
        self.running -= 1
        if not self.running:
            self.idle.set()

    def to_commit(self) -> int | None:
        return self.position if self.position is not None and self.position != self.committed else None


@dataclass(frozen=True, slots=True)
class GroupStatistics:
    partitions: int  # of the topic, held now
    running: int  # messages being handled now


class GroupMember:
    """`async with member.running(join_timeout_s=...)`: consume until the block ends; leaving
    waits for the messages in flight, then commits them."""

    def __init__(self, config: KafkaConfig, group: str, topic: str, handler: Handler, *, concurrency: int,
                 client_id: str) -> None:
        self.group = group
        self._config = config
        self._topic = topic
        self._handler = handler
        self._concurrency = concurrency
        rebalance_timeout_ms = max(config.session_timeout_ms, MIN_REBALANCE_TIMEOUT_MS)
        # the revocation wait must end before the group gives up on this member rejoining
        self._revoke_wait_s = rebalance_timeout_ms / 1000 / 2
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap, group_id=group, client_id=client_id, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.session_timeout_ms // HEARTBEAT_FRACTION,
            rebalance_timeout_ms=rebalance_timeout_ms, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            # With every slot busy (long actions) the member stops fetching; its heartbeats keep
            # it in the group meanwhile, so this only bounds a fetch loop that would be stuck.
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._running = 0
        self._slot_freed = asyncio.Event()
        self._to_commit = asyncio.Event()

    def assigned_partitions(self) -> int:
        """Partitions of the topic this member holds now."""
        return sum(1 for partition in self._partitions.values() if not partition.revoked)

    def statistics(self) -> GroupStatistics:
        return GroupStatistics(partitions=self.assigned_partitions(), running=self._running)

    @contextlib.asynccontextmanager
    async def running(self, *, join_timeout_s: float) -> AsyncIterator[GroupMember]:
        """Join the group and consume in the background; waits up to `join_timeout_s` for partitions
        (a group shared with busier members may give none at first, which is only logged)."""
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise BusError(f"cannot join consumer group {self.group!r} on Kafka at {self._config.bootstrap} "
                           f"({exc}); check TRIGGERHUB_KAFKA_BOOTSTRAP and that the broker runs") from exc
        self._consumer.subscribe([self._topic], listener=_Listener(self))
        try:
            async with asyncio.TaskGroup() as tasks:
                consuming = tasks.create_task(self._consume(tasks))
                committing = tasks.create_task(self._commit_loop())
                try:
                    async with asyncio.timeout(join_timeout_s):
                        while not self.assigned_partitions():
                            await asyncio.sleep(JOIN_POLL_S)
                except TimeoutError:
                    log.warning("%s: no partitions assigned after %.0f s; consuming once the group rebalances",
                                self.group, join_timeout_s)
                try:
                    yield self
                finally:
                    consuming.cancel()
                    committing.cancel()
        finally:
            await self._commit_now()
            await self._consumer.stop()

    async def _consume(self, tasks: asyncio.TaskGroup) -> None:
        while True:
            free = self._concurrency - self._running
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                batches = await self._consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=free)
            except (KafkaError, IllegalStateError) as exc:
                log.warning("%s: fetching from %s failed (%s); trying again", self.group, self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                partition = self._partitions.get(tp)
                if partition is None or partition.revoked:
                    continue  # taken away since the fetch: its next owner reads these again
                for record in records:
                    partition.started(record.offset)
                    self._running += 1
                    key = record.key.decode() if record.key else ""
                    tasks.create_task(self._handle(tp, partition, record.offset, key, record.value or b""))

    async def _handle(self, tp: TopicPartition, partition: _Partition, offset: int, key: str, value: bytes) -> None:
        try:
            await self._handler(key, value)
        finally:
            self._running -= 1
            self._slot_freed.set()
        # Only a handled message counts (a handler that raised ends the member, uncommitted).
        partition.finished(offset)
        self._to_commit.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._to_commit.wait()
            self._to_commit.clear()
            await self._commit_now()
            await asyncio.sleep(self._config.commit_interval_ms / 1000)

    async def _commit_now(self, only: Iterable[TopicPartition] | None = None) -> None:
        wanted = {tp: self._partitions[tp] for tp in (only if only is not None else list(self._partitions))
                  if tp in self._partitions}
        offsets = {tp: offset for tp, partition in wanted.items() if (offset := partition.to_commit()) is not None}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Not committed: those messages may be handled again by whoever holds the partition
            # next, which every handler of this hub tolerates (ids make repeats harmless).
            log.warning("%s: committing offsets %s failed (%s)", self.group,
                        {f"{tp.partition}": o for tp, o in offsets.items()}, exc)
            return
        for tp, offset in offsets.items():
            wanted[tp].committed = offset

    async def _give_up(self, revoked: set[TopicPartition]) -> None:
        """Before a rebalance moves `revoked` away: let their handlers finish (bounded), commit."""
        leaving = {tp: self._partitions[tp] for tp in revoked if tp in self._partitions}
        for partition in leaving.values():
            partition.revoked = True
        busy = [partition.idle.wait() for partition in leaving.values() if partition.running]
        if busy:
            try:
                async with asyncio.timeout(self._revoke_wait_s):
                    await asyncio.gather(*busy)
            except TimeoutError:
                log.warning("%s: messages still running after %.0f s while partitions %s are revoked; their "
                            "next owner receives them again", self.group, self._revoke_wait_s,
                            sorted(tp.partition for tp in leaving))
        await self._commit_now(leaving)
        for tp in leaving:
            self._partitions.pop(tp, None)

    def _take(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            if tp.topic == self._topic and tp not in self._partitions:
                self._partitions[tp] = _Partition()
        log.info("%s: partitions %s assigned", self.group, sorted(tp.partition for tp in assigned))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: GroupMember) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._member._give_up(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._member._take(set(assigned))
