"""Authenticator: digests compared in constant time, positive answers trusted for cache_ttl_s only."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest

from triggerhub.engine.auth import Authenticator, NamespaceState, hash_key
from triggerhub.errors import AUTH_INVALID, Unauthorized
from triggerhub.model import Subject
from triggerhub.store.base import Store

UUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
KEY = "k" * 64


class SubjectTable:
    """The store seam reduced to the subjects table; counts reads."""

    def __init__(self, *subjects: Subject) -> None:
        self.rows = {s.uuid: s for s in subjects}
        self.reads = 0

    async def get_subject(self, uuid: str) -> Subject | None:
        self.reads += 1
        return self.rows.get(uuid)

    async def list_subjects(self) -> list[Subject]:
        self.reads += 1
        return list(self.rows.values())


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def authenticator(table: SubjectTable, clock: Clock, ttl_s: float = 5.0) -> Authenticator:
    return Authenticator(cast(Store, cast(Any, table)), cache_ttl_s=ttl_s, clock=clock)


ALICE = Subject("alice", "team-a", UUID, hash_key(KEY), {"firesPerMinute": 3})


async def test_cached_answer_expires_after_the_ttl() -> None:
    table, clock = SubjectTable(ALICE), Clock()
    auth = authenticator(table, clock)
    assert (await auth.identify(f"{UUID}:{KEY}")).namespace == "team-a"
    table.rows[UUID] = replace(ALICE, blocked=True)
    clock.now_s += 4.9
    assert (await auth.identify(f"{UUID}:{KEY}")).limits == {"firesPerMinute": 3}  # cached
    assert table.reads == 1
    clock.now_s += 0.2
    with pytest.raises(Unauthorized) as refused:
        await auth.identify(f"{UUID}:{KEY}")
    assert refused.value.message == AUTH_INVALID and table.reads == 2


async def test_a_moved_generation_drops_the_cached_answer_before_its_ttl() -> None:
    table, clock, generation = SubjectTable(ALICE), Clock(), [7]

    async def read_generation() -> int:
        return generation[0]

    auth = Authenticator(cast(Store, cast(Any, table)), cache_ttl_s=3600, clock=clock,
                         generation=read_generation)
    await auth.identify(f"{UUID}:{KEY}")
    table.rows[UUID] = replace(ALICE, blocked=True)
    assert (await auth.identify(f"{UUID}:{KEY}")).namespace == "team-a"  # the generation did not move
    assert table.reads == 1
    generation[0] += 1  # as the store's subject write does, in the same transaction
    with pytest.raises(Unauthorized) as refused:
        await auth.identify(f"{UUID}:{KEY}")
    assert refused.value.message == AUTH_INVALID and table.reads == 2


async def test_a_cached_uuid_with_another_key_is_checked_against_the_store() -> None:
    table, clock = SubjectTable(ALICE), Clock()
    auth = authenticator(table, clock)
    await auth.identify(f"{UUID}:{KEY}")
    for wrong in ("x" * 64, "ü" * 64, ""):
        with pytest.raises(Unauthorized):
            await auth.identify(f"{UUID}:{wrong}")
    assert table.reads == 3  # "" is refused before any read


async def test_zero_ttl_asks_the_store_every_time() -> None:
    table, clock = SubjectTable(ALICE), Clock()
    auth = authenticator(table, clock, ttl_s=0)
    for _ in range(3):
        await auth.identify(f"{UUID}:{KEY}")
    assert table.reads == 3


async def test_namespace_state_is_blocked_only_when_every_subject_is() -> None:
    bob = Subject("bob", "team-a", "8e8b2c39-8b7e-4a3c-9d4f-0a1b2c3d4e5f", hash_key(KEY), {"firesPerMinute": 3},
                  blocked=True)
    table, clock = SubjectTable(ALICE, bob), Clock()
    auth = authenticator(table, clock)
    assert await auth.namespace_state("team-a") == NamespaceState({"firesPerMinute": 3}, blocked=False)
    assert await auth.namespace_state("nobody") == NamespaceState({}, blocked=False)
    table.rows[UUID] = replace(ALICE, blocked=True)
    assert (await auth.namespace_state("team-a")).blocked is False  # cached
    clock.now_s += 5.0
    assert await auth.namespace_state("team-a") == NamespaceState({"firesPerMinute": 3}, blocked=True)
    assert table.reads == 2


class GatedSubjectTable(SubjectTable):
    """Listing waits until the test opens the gate, so listings overlap as under load."""

    def __init__(self, *subjects: Subject) -> None:
        super().__init__(*subjects)
        self.gate = asyncio.Event()

    async def list_subjects(self) -> list[Subject]:
        self.reads += 1
        await self.gate.wait()
        return list(self.rows.values())


async def test_events_that_find_the_namespace_states_expired_together_read_them_once() -> None:
    table, clock = GatedSubjectTable(ALICE), Clock()
    auth = authenticator(table, clock)
    states = [asyncio.create_task(auth.namespace_state("team-a")) for _ in range(100)]
    await asyncio.sleep(0)
    table.gate.set()
    assert await asyncio.gather(*states) == [NamespaceState({"firesPerMinute": 3}, blocked=False)] * 100
    assert table.reads == 1
    clock.now_s += 5.1
    await auth.namespace_state("team-a")
    assert table.reads == 2


async def test_a_listing_running_when_the_states_are_forgotten_does_not_fill_the_cache() -> None:
    table, clock = GatedSubjectTable(ALICE), Clock()
    auth = authenticator(table, clock)
    stale = asyncio.create_task(auth.namespace_state("team-a"))
    await asyncio.sleep(0)
    auth.forget()  # a subject was written meanwhile
    table.gate.set()
    await stale
    assert table.reads == 1
    await auth.namespace_state("team-a")
    assert table.reads == 2
