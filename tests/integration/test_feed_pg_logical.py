"""PostgreSQL change feed in logical mode against the real server on loopback (wal_level =
logical, the wal2json plugin): commit order across a restart, event fields, filters, the
snapshot, heartbeats and slot lag, slot removal and orphans, and each error a user can meet.

Every test runs in a database of its own; the `db` fixture drops what slots the test left and
fails the test if there were any, so a feed that forgets its slot is caught.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.services import asyncpg_dsn
from tests.plugins.waiting import wait_quiet, wait_until
from triggerhub.clock import SYSTEM_CLOCK
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.engine.feed_manager import FeedManager
from triggerhub.errors import BadRequest, FeedError
from triggerhub.feeds.pg_logical import LogicalFeed, lsn_int, parse_logical_config, slot_name_for
from triggerhub.feeds.postgres import redact_dsn
from triggerhub.model import TriggerEvent
from triggerhub.store.base import Acceptance

pytestmark = pytest.mark.postgres
TRIGGER = "/guest/orders"
FEED = "/whisk.system/postgres/changes"
POLL_S = 0.02


@pytest.fixture
def dsn(fresh_pg_url: str) -> str:
    return asyncpg_dsn(fresh_pg_url)


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, item text NOT NULL, qty int NOT NULL)")
    await conn.execute("ALTER TABLE public.orders REPLICA IDENTITY FULL")
    yield conn
    left = await conn.fetch("SELECT slot_name, pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE database = current_database()")
    await conn.close()
    assert [r["slot_name"] for r in left] == [], "the test left replication slots behind"


def feed_for(dsn: str, tg: asyncio.TaskGroup, emit: StoreEmit, trigger: str = TRIGGER,
             **params: object) -> LogicalFeed:
    config = parse_logical_config({"dsn": dsn, "table": "orders", **params}, trigger)  # type: ignore[dict-item]
    return LogicalFeed(config, trigger=trigger, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=emit.load,
                       save_cursor=lambda key, value: emit.store.set_cursor(f"{emit.prefix}#{key}", value),
                       poll_s=POLL_S)


def stored(store: FakeStore, trigger: str = TRIGGER) -> list[TriggerEvent]:
    """The trigger's events in commit order (commit LSN, then place in the transaction)."""
    mine = [e for e in store.events.values() if str(e.trigger) == trigger]
    return sorted(mine, key=lambda e: (lsn_int(str(e.data["lsn"])), e.data["seq"]))  # type: ignore[index]


async def drop_slot(db: asyncpg.Connection, slot: str) -> None:
    await db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                     slot)


async def mixed_transactions(db: asyncpg.Connection, rng: random.Random, *, inserts: range, updates: int,
                             deletes: int, live: set[int]) -> list[tuple[str, int]]:
    """Run the changes in transactions of 1 to 12 statements each, in a random mix; returns
    (op, id) of every change in commit order (one connection: commit order is call order)."""
    todo = ["INSERT"] * len(inserts) + ["UPDATE"] * updates + ["DELETE"] * deletes
    rng.shuffle(todo)
    todo.sort(key=lambda op: op != "INSERT")  # enough rows exist before the first UPDATE or DELETE...
    head, tail = todo[:len(inserts) // 2], todo[len(inserts) // 2:]
    rng.shuffle(tail)  # ...then everything mixed
    todo = head + tail
    next_id, done = iter(inserts), []
    while todo:
        size = rng.randint(1, 12)
        batch, todo = todo[:size], todo[size:]
        async with db.transaction():
            for op in batch:
                if op == "INSERT" or not live:
                    row_id = next(next_id)
                    await db.execute("INSERT INTO orders VALUES ($1, 'item', 0)", row_id)
                    live.add(row_id)
                    done.append(("INSERT", row_id))
                    continue
                row_id = rng.choice(sorted(live))
                if op == "UPDATE":
                    await db.execute("UPDATE orders SET qty = qty + 1 WHERE id = $1", row_id)
                else:
                    await db.execute("DELETE FROM orders WHERE id = $1", row_id)
                    live.discard(row_id)
                done.append((op, row_id))
    return done


async def test_1300_mixed_changes_arrive_once_each_in_commit_order_across_a_stop(
        dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    rng = random.Random(16)
    emit = StoreEmit(fake_store, TRIGGER)
    live: set[int] = set()
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(dsn, tg, emit)
        await feed.start(emit)
        expected = await mixed_transactions(db, rng, inserts=range(600), updates=100, deletes=50, live=live)
        await wait_until(lambda: len(emit.returned) >= 300)
        await feed.stop()  # mid-stream: stored events may not be confirmed to PostgreSQL yet
        expected += await mixed_transactions(db, rng, inserts=range(600, 1000), updates=100, deletes=50, live=live)
        again = feed_for(dsn, tg, emit)
        await again.start(emit)
        await wait_until(lambda: len(emit.returned) >= 1300)
        await wait_quiet(lambda: asyncio.sleep(0, len(emit.returned)), lambda n: True, quiet_s=1.0, timeout_s=10)
        await again.stop()
        confirmed = await db.fetchval("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                      "WHERE slot_name = $1", slot_name_for(TRIGGER))
        await drop_slot(db, slot_name_for(TRIGGER))
    events = stored(fake_store)
    assert [(e.data["op"], e.data["key"]["id"]) for e in events] == expected  # type: ignore[index]
    assert len(expected) == 1300 and sum(op == "INSERT" for op, _ in expected) == 1000
    assert emit.returned == [True] * 1300  # the cursor skipped what the restart re-read: nothing offered twice
    assert lsn_int(confirmed) > lsn_int(str(events[-1].data["lsn"]))  # type: ignore[index]


async def test_event_fields_key_rows_commit_lsn_and_time(
        dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    await db.execute("CREATE TABLE plain (code text PRIMARY KEY, doc jsonb, n numeric)")  # REPLICA IDENTITY DEFAULT
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(dsn, tg, emit, table="public.*")
        await feed.start(emit)
        async with db.transaction():
            xid = await db.fetchval("SELECT txid_current()")
            await db.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
            await db.execute("INSERT INTO plain VALUES ('a', '{\"x\": [1, 2]}', 1.5)")
        await db.execute("UPDATE orders SET qty = 4 WHERE id = 1")
        await db.execute("UPDATE plain SET n = 2 WHERE code = 'a'")
        await db.execute("DELETE FROM orders WHERE id = 1")
        await db.execute("DELETE FROM plain WHERE code = 'a'")
        await wait_until(lambda: len(emit.returned) == 6)
        await feed.stop()
        await drop_slot(db, slot_name_for(TRIGGER))
    events = stored(fake_store)
    assert [(e.data["table"], e.data["op"], e.data["key"], e.data["row"], e.data["old"])  # type: ignore[index]
            for e in events] == [
        ("public.orders", "INSERT", {"id": 1}, {"id": 1, "item": "apple", "qty": 3}, None),
        ("public.plain", "INSERT", {"code": "a"}, {"code": "a", "doc": {"x": [1, 2]}, "n": 1.5}, None),
        ("public.orders", "UPDATE", {"id": 1}, {"id": 1, "item": "apple", "qty": 4},
         {"id": 1, "item": "apple", "qty": 3}),  # REPLICA IDENTITY FULL: the whole old row
        ("public.plain", "UPDATE", {"code": "a"}, {"code": "a", "doc": {"x": [1, 2]}, "n": 2}, {"code": "a"}),
        ("public.orders", "DELETE", {"id": 1}, None, {"id": 1, "item": "apple", "qty": 4}),
        ("public.plain", "DELETE", {"code": "a"}, None, {"code": "a"}),  # REPLICA IDENTITY DEFAULT: the key
    ]
    first, second = events[0], events[1]
    assert (first.data["xid"], first.data["seq"], second.data["seq"]) == (xid & 0xFFFFFFFF, 0, 1)  # type: ignore[index]
    assert first.data["lsn"] == second.data["lsn"] != events[2].data["lsn"]  # type: ignore[index]
    assert first.data["at"] == second.data["at"] and str(first.data["at"]).endswith("Z")  # type: ignore[index]
    assert first.id.startswith("pgl:") and first.id.endswith(f":{first.data['lsn']}:0")  # type: ignore[index]
    assert (first.type, first.subject, first.source) == (
        "triggerhub.feed.postgres.change", "public.orders",
        f"postgresql://{parse_logical_config({'dsn': dsn, 'table': 'orders'}, TRIGGER).location}")
