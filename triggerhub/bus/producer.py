"""Publishing to Kafka: one idempotent producer per process, each send awaited until the broker has it.

A publish returns only once every in-sync replica holds the record (acks=all), so whatever the
caller does next (answer 202, commit an offset) happens after the record is durable. While the
broker is away the producer keeps retrying for `delivery_timeout_ms`, then raises BusError.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Generator
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_MS = 120_000


class KafkaPublisher:
    def __init__(self, config: KafkaConfig, *, client_id: str) -> None:
        self._config = config
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap, client_id=client_id, acks="all", enable_idempotence=True,
            linger_ms=0, request_timeout_ms=DELIVERY_TIMEOUT_MS, retry_backoff_ms=200,
        )

    async def __aenter__(self) -> KafkaPublisher:
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise BusError(f"cannot connect a producer to Kafka at {self._config.bootstrap} ({exc}); "
                           "check TRIGGERHUB_KAFKA_BOOTSTRAP and that the broker runs") from exc
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        await (await self.enqueue(topic, key, value))

    async def enqueue(self, topic: str, key: str, value: bytes) -> Awaitable[None]:
        """Queue the record and return what to await for the broker's confirmation. Records
        queued for one partition are confirmed in queueing order (idempotent producer)."""
        try:
            delivery = await self._producer.send(topic, value, key=key.encode())
        except KafkaError as exc:
            raise _failed(topic, key, exc) from exc
        return _Confirmation(delivery, topic, key)


class _Confirmation:
    """Awaiting it waits for the broker's ack; one never awaited (its batch failed first) is dropped quietly."""

    __slots__ = ("_delivery", "_topic", "_key")

    def __init__(self, delivery: Awaitable[Any], topic: str, key: str) -> None:
        self._delivery = delivery
        self._topic = topic
        self._key = key

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        try:
            await self._delivery
        except KafkaError as exc:
            raise _failed(self._topic, self._key, exc) from exc


def _failed(topic: str, key: str, exc: KafkaError) -> BusError:
    return BusError(f"publishing to topic {topic!r} (key {key!r}) failed: {exc}; "
                    "the broker did not confirm the record")
