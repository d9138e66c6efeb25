"""The Feed seam: an adapter that turns its source's events into trigger events.

A feed knows nothing but its own config and the `emit` callback. `emit` returns only after
the event is durable in the hub, so the feed may then acknowledge its source.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from triggerhub.model import TriggerEvent

Emit = Callable[[TriggerEvent], Awaitable[bool]]
"""Store the event (and fire the trigger); False means it was a duplicate already stored."""


class Feed(Protocol):
    async def start(self, emit: Emit) -> None:
        """Connect to the source and begin emitting; returns once running."""

    async def stop(self) -> None:
        """Stop emitting and release the source; idempotent."""
