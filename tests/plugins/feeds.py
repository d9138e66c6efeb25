"""Fixtures for the feed adapters and FeedManager: a small in-memory Store (the test clock is
tests/plugins/clock.py's TestClock).

The fakes sit exactly at the seams (Clock, Store); everything above them is the real code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from triggerhub.model import Activation, Collection, Entity, Invocation, Subject, TriggerEvent
from triggerhub.store.base import ActivationQuery, Acceptance, FeedRegistration


ORDERS_TABLE_SQL = "CREATE TABLE public.orders (id int PRIMARY KEY, item text NOT NULL, qty int NOT NULL)"


@pytest.fixture
async def orders_db(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's own PostgreSQL database (`pg_dsn`), which holds the table
    `orders` that the PostgreSQL change feeds follow in their tests."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(ORDERS_TABLE_SQL)
    yield conn
    await conn.close()


class FakeStore:
    """The subset of the Store protocol the feeds use, in memory, with the real dedup rule."""

    def __init__(self) -> None:
        self.events: dict[str, TriggerEvent] = {}
        self.cursors: dict[str, str] = {}
        self.feeds: dict[str, FeedRegistration] = {}
        self.entities: dict[tuple[str, str], Entity] = {}

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def accept(self, acceptance: Acceptance) -> bool:
        event = acceptance.event
        if event is not None:
            if event.id in self.events:
                return False
            self.events[event.id] = event
        if acceptance.cursor is not None:
            self.cursors[acceptance.cursor[0]] = acceptance.cursor[1]
        return True

    async def put_feed(self, registration: FeedRegistration) -> None:
        self.feeds[registration.trigger] = registration

    async def get_feed(self, trigger: str) -> FeedRegistration | None:
        return self.feeds.get(trigger)

    async def delete_feed(self, trigger: str) -> None:
        self.feeds.pop(trigger, None)

    async def list_feeds(self) -> list[FeedRegistration]:
        return list(self.feeds.values())

    async def get_cursor(self, feed_id: str) -> str | None:
        return self.cursors.get(feed_id)

    async def set_cursor(self, feed_id: str, value: str) -> None:
        self.cursors[feed_id] = value

    async def count_events(self, trigger: str | None = None) -> int:
        return sum(1 for e in self.events.values() if trigger is None or str(e.trigger) == trigger)

    async def get_event(self, event_id: str) -> TriggerEvent | None:
        return self.events.get(event_id)

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        return self.entities.get((namespace, name))

    async def put_entities(self, puts: Sequence[Entity], deletes: Sequence[Entity] = ()) -> list[Entity]:
        for entity in deletes:
            self.entities.pop((entity.namespace, entity.name), None)
        for entity in puts:
            self.entities[(entity.namespace, entity.name)] = entity
        return list(puts)

    # Unused by the feeds; present so FakeStore satisfies the Store protocol.
    async def put_subject(self, subject: Subject) -> None: ...
    async def get_subject(self, uuid: str) -> Subject | None: return None
    async def list_subjects(self) -> list[Subject]: return []
    async def delete_subject(self, uuid: str) -> bool: return False
    async def list_entities(self, collection: Collection, namespace: str, *, package: str | None = None,
                            skip: int = 0, limit: int = 30) -> list[Entity]: return []
    async def count_entities(self, collection: Collection, namespace: str, *, package: str | None = None) -> int:
        return 0
    async def complete(self, activation: Activation) -> bool: return True
    async def get_activation(self, namespace: str, activation_id: str) -> Activation | None: return None
    async def list_activations(self, query: ActivationQuery) -> list[Activation]: return []
    async def count_activations(self, query: ActivationQuery) -> int: return 0
    async def list_pending(self) -> list[Invocation]: return []


class StoreEmit:
    """A CursorEmit writing straight to a FakeStore under one feed's cursor prefix."""

    def __init__(self, store: FakeStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.returned: list[bool] = []

    async def __call__(self, event: TriggerEvent, cursor: tuple[str, str] | None = None) -> bool:
        full = (f"{self.prefix}#{cursor[0]}", cursor[1]) if cursor else None
        stored = await self.store.accept(Acceptance(event=event, cursor=full))
        self.returned.append(stored)
        return stored

    async def load(self, key: str) -> str | None:
        return await self.store.get_cursor(f"{self.prefix}#{key}")


@pytest.fixture
def fake_store() -> FakeStore:
    return FakeStore()
