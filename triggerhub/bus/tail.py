"""Reading topics without a consumer group: every partition, from a point in time onwards.

A controller reads its own completions topic and the health topic this way: each controller
needs every message of them, and there is nothing to commit (a restarted controller has no
callers left waiting and rebuilds invoker health from the last few seconds of heartbeats).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError
from triggerhub.retry import retrying

log = logging.getLogger(__name__)

TailHandler = Callable[[str, str, bytes], Awaitable[None]]
FETCH_WAIT_MS = 100


class Tail:
    """`async with Tail(...)` assigns the partitions and seeks; `run()` feeds the handler until cancelled."""

    def __init__(self, config: KafkaConfig, topics: Mapping[str, int], handler: TailHandler, *, since_ms: int) -> None:
        """`topics`: name -> partition count (as `ensure_topics` returns it), at least 1 each: a
        tail of no partitions would read nothing, and say nothing of it."""
        empty = sorted(topic for topic, count in topics.items() if count < 1)
        if empty or not topics:
            raise BusError(f"cannot read topics {empty or '(none)'}: no partitions to read; "
                           "take the counts from ensure_topics(), which waits until the broker shows them")
        self._config = config
        self._topics = dict(topics)
        self._handler = handler
        self._since_ms = since_ms
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Tail:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._config.bootstrap, group_id=None,
                                          enable_auto_commit=False, auto_offset_reset="latest",
                                          fetch_max_wait_ms=FETCH_WAIT_MS)
        try:
            await self._consumer.start()
            partitions = [TopicPartition(topic, p) for topic, count in self._topics.items() for p in range(count)]
            self._consumer.assign(partitions)
            log.info("reading %s from %d ms on", self._topics, self._since_ms)
            offsets = await self._consumer.offsets_for_times({tp: self._since_ms for tp in partitions})
            ends = await self._consumer.end_offsets(partitions)
            for tp in partitions:
                found = offsets.get(tp)
                self._consumer.seek(tp, found.offset if found is not None else ends[tp])
        except KafkaError as exc:
            await self._consumer.stop()
            self._consumer = None
            raise BusError(f"cannot read topics {self._topics} on {self._config.bootstrap} ({exc})") from exc
        except BaseException:
            await self._consumer.stop()
            self._consumer = None
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            raise BusError("Tail.run() before `async with Tail(...)`: nothing is assigned")

        async def fetch() -> dict[TopicPartition, list[Any]]:
            try:
                batches: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=1000)
                return batches
            except KafkaError as exc:
                raise BusError(f"reading {self._topics} failed: {exc}") from exc

        while True:
            batches = await retrying(f"reading {self._topics}", fetch)
            for tp, records in batches.items():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    await self._handler(tp.topic, key, record.value or b"")
