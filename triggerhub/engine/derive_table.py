"""Derived triggers' keyed state in the workers' Faust table (distributed, TRIGGERHUB_DERIVE_STATE=table).

Every process that matches events (`DeriveRouter`) publishes each source event of a derived
trigger to the `derive-keys` topic, keyed by (derived trigger, correlation key), instead of
changing store rows. In the workers, `TableDeriver.step` applies it to that key's value in the
table (bus/keyed.py) with the same pure transitions as the embedded store (rules/correlate.py).
The value holds the key's state, when it is next due, and the ids of the source events applied
lately: a message redelivered after a crash may already have its changelog write, and is then
applied no second time. A derived event is published to `trigger-events` and acknowledged
before the table write; its id comes from the source events (`all`/`sequence`) or from the
event that armed the key (`absence`), so a crash between the two publishes the same event
again, which the worker's acceptance refuses as a duplicate. Deadlines: the table's timer ticks
a due key through the topic, and the tick runs `on_due` in the agent, after changelog recovery.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.engine.derive import OnEvent, derived_event
from triggerhub.engine.distributed import Publisher
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.rules import correlate
from triggerhub.retry import retrying
from triggerhub.store.base import DeriveStep

log = logging.getLogger(__name__)

TICK = b'{"due":true}'
"""The timer's message: look at the key's state now (bus/keyed.py)."""
APPLIED_MAX = 256
"""Source event ids kept per key. A redelivery repeats messages not yet committed (a few
commit intervals' worth); a key gets this many events in that time only at hundreds per second."""
FORGET_AFTER_MS = 600_000
"""A key without state keeps its applied ids this long (redeliveries come within seconds), then goes."""

FireDerived = Callable[[TriggerEvent], Awaitable[None]]
"""Publish a derived event on its trigger's topic and wait for Kafka's acknowledgement."""


class Specs(Protocol):
    """Derived triggers' declarations (engine/derive.py `Deriver`)."""

    @property
    def listening_since_ms(self) -> int:
        """Since when this process hears the sources (correlate.on_due)."""

    async def find_spec(self, name: str) -> tuple[FullyQualifiedName, correlate.DeriveSpec | None]: ...


def table_key(trigger: str, key: str) -> str:
    """The message and table key of (derived trigger, correlation key); unambiguous for any key text."""
    return json.dumps([trigger, key], separators=(",", ":"))


class DeriveRouter:
    """On the event path of every distributed process: a derived trigger's source event goes to
    the `derive-keys` topic. Published whether or not the event was new (a redelivered event may
    never have been routed); the table applies each source event once."""

    def __init__(self, publisher: Publisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    async def __call__(self, steps: Sequence[DeriveStep], confirmations: list[Awaitable[None]] | None) -> None:
        for step in steps:
            if not isinstance(step.transition, OnEvent):
                continue
            source = step.transition.source
            message = json.dumps({"event": {"id": source.id, "trigger": source.trigger, "timeMs": source.time_ms,
                                            "heardMs": source.heard_ms, "data": source.data}},
                                 separators=(",", ":")).encode()
            key = table_key(step.trigger, step.key)
            if confirmations is not None:  # a worker's batch: confirmed before its offsets are committed
                confirmations.append(await self._publisher.enqueue(self._topic, key, message))
            else:
                await self._publisher.publish(self._topic, key, message)


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key's value in the table."""

    state: dict[str, Any] | None
    due_ms: int | None
    applied: tuple[str, ...] = ()

    def dumps(self) -> bytes:
        return json.dumps({"state": self.state, "dueMs": self.due_ms, "applied": list(self.applied)},
                          separators=(",", ":")).encode()

    @classmethod
    def loads(cls, raw: bytes | None) -> KeyValue:
        if not raw:
            return cls(None, None)
        try:
            doc = json.loads(raw)
            state = doc["state"]
            due_ms = doc["dueMs"]
            applied = tuple(str(i) for i in doc["applied"])
        except (ValueError, KeyError, TypeError):  # never stop the agent over a broken value
            log.error("derived trigger table value %r is not readable; the key starts afresh", raw[:80])
            return cls(None, None)
        return cls(state if isinstance(state, dict) else None, due_ms if isinstance(due_ms, int) else None, applied)


class TableDeriver:
    """The table agent's step (bus/keyed.py `Step`) and the timer's test (`Due`)."""

    def __init__(self, specs: Specs, fire: FireDerived, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._specs = specs
        self._fire = fire
        self._clock = clock
        self._due: dict[str, tuple[bytes, int | None]] = {}  # key -> (the value last seen, its due time)

    def due(self, key: str, stored: bytes) -> bool:
        """Asked for every key several times a second: each value is parsed once, not each time."""
        seen = self._due.get(key)
        if seen is None or seen[0] is not stored:
            seen = self._due[key] = (stored, KeyValue.loads(stored).due_ms)
        return seen[1] is not None and seen[1] <= self._clock.now_ms()

    async def step(self, key: str, stored: bytes | None, message: bytes) -> bytes | None:
        self._due.pop(key, None)
        try:
            name, correlation_key = json.loads(key)
            doc = json.loads(message)
        except ValueError:
            log.error("derive-keys message %r under key %r is not readable; skipped", message[:80], key[:80])
            return stored
        value = KeyValue.loads(stored)
        # The store or Kafka being away holds the agent (and the key's order) until it is back.
        fqn, spec = await retrying(f"reading derived trigger {name}", lambda: self._specs.find_spec(str(name)),
                                   clock=self._clock)
        now_ms = self._clock.now_ms()
        applied = value.applied
        if "event" in doc:
            source = _source(doc["event"])
            if source is None or source.id in applied:
                return stored  # applied before a crash, whose changelog write survived
            applied = (*applied, source.id)[-APPLIED_MAX:]
            transition = (correlate.Transition(None, None) if spec is None else
                          correlate.on_event(spec, str(fqn), str(correlation_key), value.state, source))
        else:  # a tick of the timer
            if value.due_ms is None or value.due_ms > now_ms:
                return stored
            if value.state is None:
                return None  # only old applied ids were left
            transition = (correlate.Transition(None, None) if spec is None else
                          correlate.on_due(spec, str(fqn), str(correlation_key), value.state, now_ms,
                                           listening_since_ms=self._specs.listening_since_ms))
        for derived in transition.derived:  # acknowledged by Kafka before the table write
            event = derived_event(fqn, derived)
            await retrying(f"publishing derived event {event.id} of {fqn}", functools.partial(self._fire, event),
                           clock=self._clock)
            log.debug("derived event %s of %s for key %r published", event.id, fqn, correlation_key)
        due_ms = transition.due_ms
        if transition.state is None:
            if not applied:
                return None
            due_ms = now_ms + FORGET_AFTER_MS
        return KeyValue(transition.state, due_ms, applied).dumps()


def _source(doc: Any) -> correlate.SourceEvent | None:
    try:
        return correlate.SourceEvent(str(doc["id"]), str(doc["trigger"]), int(doc["timeMs"]), doc.get("data"),
                                     heard_ms=int(doc.get("heardMs", 0)))
    except (KeyError, TypeError, ValueError):
        log.error("derive-keys event %r is not readable; skipped", str(doc)[:80])
        return None


__all__ = ["APPLIED_MAX", "FORGET_AFTER_MS", "TICK", "DeriveRouter", "FireDerived", "KeyValue", "Specs", "TableDeriver",
           "table_key"]
