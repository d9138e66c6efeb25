"""The entity read cache ages on the injected clock: a read within the TTL is served from the
cache, the first read after it reaches the store."""

from __future__ import annotations

from triggerhub.config import LimitsConfig
from triggerhub.engine.entities import Entities
from triggerhub.model import Entity, FullyQualifiedName, Trigger

from tests.plugins.clock import TestClock


class CountingStore:
    """The one store read the cache makes, counted (a fake at the Store seam)."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.reads = 0

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        self.reads += 1
        return self.entity


async def test_cached_reads_last_the_ttl_on_the_injected_clock() -> None:
    store = CountingStore(Trigger("guest", "tick"))
    clock = TestClock(monotonic_s=100.0)
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024, cache_ttl_s=1.0, clock=clock)  # type: ignore[arg-type]
    fqn = FullyQualifiedName("guest", "tick")

    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
    clock.jump(0.9)
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
    assert store.reads == 1
    clock.jump(0.2)
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
    assert store.reads == 2
