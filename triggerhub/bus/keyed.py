"""Keyed state in a Faust table: one agent applies each message to its key's value, one timer
asks for the keys whose time has come.

`keyed_state(app, topic, ...)` adds to a worker's Faust app a table (changelog topic
`<app id>-<table>-changelog`, partitioned like `topic`), an agent reading `topic` and a timer.
For each message the agent awaits `step(key, stored, message)` and writes what it returns to the
table (None deletes the key). The step may have effects (publishing); they happen before the
write, and the message's offset is committed only after the write reached Kafka (Faust flushes
its producer before each commit), so a crash repeats a step whose write may or may not be in
the changelog: steps must tolerate that (the caller keeps the ids it applied in the value).

The timer runs every `interval_s` once the table is recovered from its changelog, on this
process's own partitions: for each key `due(key, stored)` accepts, it sends `tick` to `topic`
under that key, so every change of a key's value happens in the agent, in the key's order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

Step = Callable[[str, bytes | None, bytes], Awaitable[bytes | None]]
"""(key, stored value or None, message) -> the new value, None to delete the key."""
Due = Callable[[str, bytes], bool]
"""(key, stored value) -> whether the key must be looked at now."""

RETICK_S = 5.0
"""A key whose tick has not been handled yet is not ticked again before this long."""


def keyed_state(app: faust.App, topic: str, *, table: str, partitions: int, step: Step, due: Due,
                tick: bytes, interval_s: float) -> Any:
    """The table (a faust.Table), its agent and its timer, added to `app` before it starts."""
    source = app.topic(topic, key_serializer="raw", value_serializer="raw", partitions=partitions)
    state = app.Table(table, key_type=bytes, value_type=bytes,  # bytes: raw serializers
                      partitions=partitions)
    changelog: str = getattr(state, "changelog_topic_name")
    ticked: dict[bytes, float] = {}
    written_to: dict[bytes, int] = {}  # key -> partition, for keys this process wrote

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            raw_key: bytes = event.message.key or b""
            stored = state.get(raw_key)
            value = await step(raw_key.decode(), stored, event.message.value)
            ticked.pop(raw_key, None)
            if value is None:
                written_to.pop(raw_key, None)
                if raw_key in state:
                    del state[raw_key]
            elif value != stored:
                written_to[raw_key] = event.message.partition
                state[raw_key] = value

    async def timer() -> None:
        recovery: Any = getattr(app.tables, "recovery")
        if app.rebalancing or not recovery.completed.is_set():
            return  # deadlines are looked at once the changelog is read back
        mine = _assigned(app, topic)
        now_s = time.monotonic()
        for raw_key, stored in list(state.data.items()):
            if stored is None or now_s - ticked.get(raw_key, -RETICK_S) < RETICK_S:
                continue
            key = bytes(raw_key)
            partition = written_to.get(key, _recovered_partition(state, key))
            if partition is None or partition not in mine or not due(key.decode(), stored):
                continue
            ticked[key] = now_s
            try:
                await source.send(key=key, value=tick)
            except KafkaError as exc:  # asked again after RETICK_S
                log.warning("deadline tick of %r not sent: %s", key[:80], exc)
                return

    async def assigned(*args: Any, **_kwargs: Any) -> None:  # (app, assigned TPs)
        mine = sorted(tp.partition for tp in (args[1] if len(args) > 1 else ()) if tp.topic == topic)
        log.info("table %s: partitions %s of %s assigned; their values are read back from %s", table, mine, topic,
                 changelog)

    app.on_partitions_assigned.connect(assigned)
    app.agent(source, name=f"{app.conf.id}.{table}", concurrency=1)(agent)
    app.timer(interval_s, name=f"{app.conf.id}.{table}.due")(timer)
    return state


def _assigned(app: faust.App, topic: str) -> set[int]:
    try:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
    except (AttributeError, RuntimeError):  # the consumer is not started yet
        return set()


def _recovered_partition(table: Any, key: bytes) -> int | None:
    """The changelog partition a recovered key was read from (the memory store keeps it)."""
    partitions: dict[Any, int] = getattr(table.data, "_key_partition", {})
    return partitions.get(key)


__all__ = ["Due", "Step", "keyed_state"]
