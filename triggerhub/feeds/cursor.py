"""What a feed may ask of the hub besides emitting: a durable cursor of its own.

A feed that remembers its source position (an alarm's last fired instant, an MQTT packet-id
generation, the files already reported) reads it once at start with `load` and writes it
together with an event: `emit(event, cursor=(key, value))` stores both in one transaction, so
the position can never run ahead of, or lag behind, the stored events. Keys are private to
one feed registration (the hub prefixes them with the trigger).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from triggerhub.model import TriggerEvent

Cursor = tuple[str, str]
"""(key, value) of one feed-private cursor."""


class CursorEmit(Protocol):
    async def __call__(self, event: TriggerEvent, cursor: Cursor | None = None) -> bool:
        """Store the event (and fire the trigger), and `cursor` in the same transaction; returns
        only once both are durable, False when the event id was already stored."""


CursorLoader = Callable[[str], Awaitable[str | None]]
"""The stored value of this feed's cursor `key`, or None when never written."""

CursorSaver = Callable[[str, str], Awaitable[None]]
"""Store this feed's cursor `key` without an event: for positions no event carries (a Kafka
partition's start, a batch of poison records only) and feed-private state such as dead letters."""


class CursorFeed(Protocol):
    """An adapter that turns its source's events into trigger events; every built-in feed is one."""

    async def start(self, emit: CursorEmit) -> None:
        """Connect to the source and begin emitting; returns once running."""

    async def stop(self) -> None:
        """Stop emitting and release the source; idempotent."""


@runtime_checkable
class GaugedFeed(CursorFeed, Protocol):
    """A feed that also reports levels of its source (a replication slot's lag, say)."""

    def gauges(self) -> dict[str, int]:
        """The latest levels, by name with its unit (`slotLagBytes`); READ and status show them."""
