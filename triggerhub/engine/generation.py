"""The store's entity generation, read once per unit of work by the caches that revalidate against it.

Embedded, every cached entity read (engine/entities.py) and credential check (engine/auth.py)
first reads the store's entity generation, so a write by another process is seen by the next
request after its commit. An API fire read it four times (credentials, trigger, the tenant's
state, the action), a feed event three. Inside `once()` the task that opened it reads the
generation at its first revalidation and reuses that value until the block ends: the unit still
sees every write committed before it began. Other tasks, such as the activations the unit
started (which may run for minutes), read it afresh as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class _Unit:
    owner: EntityGeneration
    task: asyncio.Task[Any] | None
    generation: int | None = None


_UNIT: ContextVar[_Unit | None] = ContextVar("triggerhub_entity_generation_unit", default=None)


class EntityGeneration:
    """Calling it reads the generation through `read`, or, inside `once()` in the task that
    opened it, gives the value read first in that block."""

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read

    async def __call__(self) -> int:
        unit = self._unit()
        if unit is None:
            return await self._read()
        if unit.generation is None:
            unit.generation = await self._read()
        return unit.generation

    def renew(self) -> None:
        """Inside `once()`: the next revalidation reads the generation again (after a wait, so
        the rest of the unit sees writes committed meanwhile). Outside a block: nothing."""
        unit = self._unit()
        if unit is not None:
            unit.generation = None

    @contextlib.contextmanager
    def once(self) -> Iterator[None]:
        """One generation read for the block's revalidations (a request, an event). Entity writes
        in the block do not move what it reads: use it only around work that writes no entity.
        Nested blocks of the same task share the outer one's read."""
        if self._unit() is not None:
            yield
            return
        token = _UNIT.set(_Unit(self, asyncio.current_task()))
        try:
            yield
        finally:
            _UNIT.reset(token)

    def _unit(self) -> _Unit | None:
        """The open unit of this generation in the current task (a task created inside a block
        inherits the variable, not the unit: it checks that the task is the opener)."""
        unit = _UNIT.get()
        if unit is None or unit.owner is not self or unit.task is not asyncio.current_task():
            return None
        return unit


__all__ = ["EntityGeneration"]
