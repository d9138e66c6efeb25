"""The entity read cache: with a TTL it ages on the injected clock (a read within the TTL is served
from the cache, the first read after it reaches the store); without one it lasts while the store's
entity generation is unchanged (revalidating reads). Misses of one entity that overlap share one
store read, and a read overtaken by a write of its entity does not fill the cache."""

from __future__ import annotations

import asyncio

from triggerhub.config import LimitsConfig
from triggerhub.engine.entities import Entities
from triggerhub.errors import StoreError
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


class GenerationStore(CountingStore):
    """Also the entity generation, which another process's write raises."""

    def __init__(self, entity: Entity) -> None:
        super().__init__(entity)
        self.version = 7
        self.version_reads = 0

    async def get_entity_generation(self) -> int:
        self.version_reads += 1
        return self.version


async def test_revalidating_reads_last_while_the_entity_generation_is_unchanged() -> None:
    store = GenerationStore(Trigger("guest", "tick"))
    clock = TestClock(monotonic_s=100.0)
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024, clock=clock,  # type: ignore[arg-type]
                        generation=store.get_entity_generation, revalidate_reads=True)
    fqn = FullyQualifiedName("guest", "tick")

    for _ in range(3):
        assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
        clock.jump(3600)  # time alone never ages a read
    assert (store.reads, store.version_reads) == (1, 3)
    store.version = 8  # an entity was written, here or by another process
    store.entity = Trigger("guest", "tick", version="0.0.2")
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick", version="0.0.2")
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick", version="0.0.2")
    assert (store.reads, store.version_reads) == (2, 5)


async def test_one_revalidation_reads_the_generation_once_for_its_task() -> None:
    """A fire's or feed event's cached reads share the generation read at the first of them; a
    task it starts (an activation) and any read after the block read it afresh."""
    store = GenerationStore(Trigger("guest", "tick"))
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024,  # type: ignore[arg-type]
                        generation=store.get_entity_generation, revalidate_reads=True)
    generation = entities.revalidating_generation
    assert generation is not None
    fqn = FullyQualifiedName("guest", "tick")

    with entities.one_revalidation():
        assert store.version_reads == 0  # read at the first revalidation, not when the block opens
        for _ in range(3):
            assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
        with entities.one_revalidation():  # nested: the outer block's read
            assert await generation() == 7
        assert (store.reads, store.version_reads) == (1, 1)
        store.version = 8  # another process writes the trigger while the unit runs
        store.entity = Trigger("guest", "tick", version="0.0.2")
        assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")  # the unit's view
        assert await asyncio.create_task(generation()) == 8  # another task reads the store
        assert store.version_reads == 2
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick", version="0.0.2")
    assert (store.reads, store.version_reads) == (2, 3)


async def test_a_renewed_unit_sees_writes_committed_while_it_waited() -> None:
    """A feed event that waited for its namespace's event budget renews its unit: the reads after
    the wait see the entities as they are then, and share that one new generation read."""
    store = GenerationStore(Trigger("guest", "tick"))
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024,  # type: ignore[arg-type]
                        generation=store.get_entity_generation, revalidate_reads=True)
    fqn = FullyQualifiedName("guest", "tick")

    with entities.one_revalidation():
        assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
        store.version = 8  # written by another process during the wait
        store.entity = Trigger("guest", "tick", version="0.0.2")
        entities.renew_revalidation()
        for _ in range(2):
            assert await entities.find(fqn, Trigger) == Trigger("guest", "tick", version="0.0.2")
        assert (store.reads, store.version_reads) == (2, 2)


async def test_one_revalidation_is_nothing_without_revalidating_reads() -> None:
    store = GenerationStore(Trigger("guest", "tick"))
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024,  # type: ignore[arg-type]
                        generation=store.get_entity_generation)
    with entities.one_revalidation():
        await entities.revalidate()
        await entities.revalidate()
    assert store.version_reads == 2


class BatchGenerationStore(CountingStore):
    """The entity read and the entity generation (bumped by every entity write in any process)."""

    def __init__(self, entity: Entity) -> None:
        super().__init__(entity)
        self.generation = 0

    async def get_generation(self) -> int:
        return self.generation


async def test_a_revalidated_cache_is_kept_until_the_generation_moves() -> None:
    store = BatchGenerationStore(Trigger("guest", "tick"))
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024, cache_ttl_s=None,  # type: ignore[arg-type]
                        generation=store.get_generation)
    fqn = FullyQualifiedName("guest", "tick")

    await entities.revalidate()
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
    await entities.revalidate()
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
    assert store.reads == 1
    store.entity = Trigger("guest", "tick", version="0.0.2")
    store.generation = 1  # another process wrote an entity
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")  # not revalidated yet: cached
    await entities.revalidate()
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick", version="0.0.2")
    assert store.reads == 2


async def test_without_a_generation_revalidate_reads_nothing() -> None:
    store = CountingStore(Trigger("guest", "tick"))
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024, cache_ttl_s=None)  # type: ignore[arg-type]
    await entities.revalidate()
    assert await entities.find(FullyQualifiedName("guest", "tick"), Trigger) == Trigger("guest", "tick")
    await entities.revalidate()
    assert await entities.find(FullyQualifiedName("guest", "tick"), Trigger) == Trigger("guest", "tick")
    assert store.reads == 1


class GatedStore(CountingStore):
    """Each read waits until the test opens the gate, so reads overlap as under load."""

    def __init__(self, entity: Entity) -> None:
        super().__init__(entity)
        self.gate = asyncio.Event()

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        self.reads += 1
        await self.gate.wait()
        return self.entity


async def test_concurrent_misses_of_one_entity_share_one_read() -> None:
    store = GatedStore(Trigger("guest", "tick"))
    clock = TestClock(monotonic_s=100.0)
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024, cache_ttl_s=1.0, clock=clock)  # type: ignore[arg-type]
    fqn = FullyQualifiedName("guest", "tick")

    async with asyncio.TaskGroup() as tasks:
        finds = [tasks.create_task(entities.find(fqn, Trigger)) for _ in range(50)]
        await asyncio.sleep(0)
        store.gate.set()
    assert [find.result() for find in finds] == [Trigger("guest", "tick")] * 50
    assert store.reads == 1
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")  # cached by the shared read
    assert store.reads == 1


async def test_a_read_running_when_its_entity_is_written_does_not_fill_the_cache() -> None:
    store = GatedStore(Trigger("guest", "tick"))
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024, cache_ttl_s=None)  # type: ignore[arg-type]
    fqn = FullyQualifiedName("guest", "tick")

    stale = asyncio.create_task(entities.find(fqn, Trigger))
    await asyncio.sleep(0)
    store.entity = Trigger("guest", "tick", version="0.0.2")  # written meanwhile by this process
    entities.forget([store.entity])
    later = asyncio.create_task(entities.find(fqn, Trigger))  # after the write: must not join the old read
    await asyncio.sleep(0)
    store.gate.set()
    assert await stale == Trigger("guest", "tick", version="0.0.2")  # the gate releases both with the new one
    assert await later == Trigger("guest", "tick", version="0.0.2")
    assert store.reads == 2
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick", version="0.0.2")
    assert store.reads == 2  # the later read filled the cache


async def test_a_failed_shared_read_fails_every_waiter_and_is_not_cached() -> None:
    store = GatedStore(Trigger("guest", "tick"))
    entities = Entities(store, LimitsConfig(), max_code_bytes=1024, cache_ttl_s=1.0)  # type: ignore[arg-type]
    fqn = FullyQualifiedName("guest", "tick")

    async def broken(namespace: str, name: str) -> Entity | None:
        store.reads += 1
        await store.gate.wait()
        raise StoreError("the database is away")

    store.get_entity = broken  # type: ignore[method-assign]
    finds = [asyncio.create_task(entities.find(fqn, Trigger)) for _ in range(3)]
    await asyncio.sleep(0)
    store.gate.set()
    outcomes = await asyncio.gather(*finds, return_exceptions=True)
    assert [str(outcome) for outcome in outcomes] == ["the database is away"] * 3
    assert store.reads == 1
    del store.get_entity  # the store answers again
    assert await entities.find(fqn, Trigger) == Trigger("guest", "tick")
    assert store.reads == 2
