"""Reading topics without a consumer group: every partition, from a point in time onwards.

A controller reads its own completions topic and the health topic this way: each controller
needs every message of them, and there is nothing to commit (a restarted controller has no
callers left waiting and rebuilds invoker health from the last few seconds of heartbeats).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError

log = logging.getLogger(__name__)

TailHandler = Callable[[str, str, bytes], Awaitable[None]]
FETCH_WAIT_MS = 100
RETRY_PAUSE_S = 1.0


class Tail:
    """`async with Tail(...)` assigns the partitions and seeks; `run()` feeds the handler until cancelled."""

    def __init__(self, config: KafkaConfig, topics: Sequence[str], handler: TailHandler, *, since_ms: int) -> None:
        self._config = config
        self._topics = list(topics)
        self._handler = handler
        self._since_ms = since_ms
        self._consumer = AIOKafkaConsumer(bootstrap_servers=config.bootstrap, group_id=None,
                                          enable_auto_commit=False, auto_offset_reset="latest",
                                          fetch_max_wait_ms=FETCH_WAIT_MS)

    async def __aenter__(self) -> Tail:
        try:
            await self._consumer.start()
            await self._consumer.topics()  # loads metadata of every topic, so partitions_for_topic answers
            partitions = [TopicPartition(topic, p) for topic in self._topics
                          for p in sorted(self._consumer.partitions_for_topic(topic) or ())]
            if not partitions:
                raise BusError(f"topics {self._topics} have no partitions on {self._config.bootstrap}; "
                               "they are created at start-up, so check the broker")
            self._consumer.assign(partitions)
            offsets = await self._consumer.offsets_for_times({tp: self._since_ms for tp in partitions})
            ends = await self._consumer.end_offsets(partitions)
            for tp in partitions:
                found = offsets.get(tp)
                self._consumer.seek(tp, found.offset if found is not None else ends[tp])
        except KafkaError as exc:
            await self._consumer.stop()
            raise BusError(f"cannot read topics {self._topics} on {self._config.bootstrap} ({exc})") from exc
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._consumer.stop()

    async def run(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                log.warning("reading %s failed (%s); retrying in %.0f s", self._topics, exc, RETRY_PAUSE_S)
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            for tp, records in batches.items():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    await self._handler(tp.topic, key, record.value or b"")
