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
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.waiting import wait_quiet, wait_until
from triggerhub.clock import SYSTEM_CLOCK
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.engine.feed_manager import FeedManager
from triggerhub.errors import BadRequest, FeedError
from triggerhub.feeds.pg_logical import LogicalFeed, parse_logical_config, slot_name_for
from triggerhub.feeds.pg_slots import lsn_int
from triggerhub.feeds.postgres import redact_dsn
from triggerhub.model import TriggerEvent
from triggerhub.store.base import Acceptance, FeedRegistration

pytestmark = pytest.mark.postgres
TRIGGER = "/guest/orders"
FEED = "/whisk.system/postgres/changes"
POLL_MS = 20


@pytest.fixture
async def db(orders_db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """`orders_db` with old rows logged in full; fails the test if it left replication slots."""
    await orders_db.execute("ALTER TABLE public.orders REPLICA IDENTITY FULL")
    yield orders_db
    left = await orders_db.fetch("SELECT slot_name, pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                 "WHERE database = current_database()")
    assert [r["slot_name"] for r in left] == [], "the test left replication slots behind"


def feed_for(pg_dsn: str, tg: asyncio.TaskGroup, emit: StoreEmit, trigger: str = TRIGGER,
             **params: object) -> LogicalFeed:
    config = parse_logical_config({"dsn": pg_dsn, "table": "orders", "pollMs": POLL_MS, **params},  # type: ignore[dict-item]
                                  trigger)
    return LogicalFeed(config, trigger=trigger, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=emit.load,
                       save_cursor=lambda key, value: emit.store.set_cursor(f"{emit.prefix}#{key}", value))


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
        pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    rng = random.Random(16)
    emit = StoreEmit(fake_store, TRIGGER)
    live: set[int] = set()
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit)
        await feed.start(emit)
        expected = await mixed_transactions(db, rng, inserts=range(600), updates=100, deletes=50, live=live)
        await wait_until(lambda: len(emit.returned) >= 300)
        await feed.stop()  # mid-stream: stored events may not be confirmed to PostgreSQL yet
        expected += await mixed_transactions(db, rng, inserts=range(600, 1000), updates=100, deletes=50, live=live)
        again = feed_for(pg_dsn, tg, emit)
        await again.start(emit)
        await wait_until(lambda: len(emit.returned) >= 1300)
        async def offered() -> int:
            return len(emit.returned)
        await wait_quiet(offered, lambda n: n >= 1300, quiet_s=1.0, timeout_s=10)  # and no late second copy
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
        pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    await db.execute("CREATE TABLE plain (code text PRIMARY KEY, doc jsonb, n numeric)")  # REPLICA IDENTITY DEFAULT
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit, table="public.*")
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
        f"postgresql://{parse_logical_config({'dsn': pg_dsn, 'table': 'orders'}, TRIGGER).location}")


async def test_schema_table_and_operation_filters(pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    await db.execute("CREATE SCHEMA app; CREATE TABLE app.a (id int PRIMARY KEY); CREATE TABLE app.b (id int PRIMARY KEY)")
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit, table="app.*", operations="insert,DELETE")
        await feed.start(emit)
        await db.execute("INSERT INTO app.a VALUES (1); INSERT INTO app.b VALUES (2); INSERT INTO orders VALUES (3, 'x', 0)")
        await db.execute("UPDATE app.a SET id = 10; DELETE FROM app.b; DELETE FROM orders")
        await db.execute("INSERT INTO app.a VALUES (99)")  # the last change: every earlier one has arrived
        await wait_until(lambda: any(e.data["key"] == {"id": 99} for e in fake_store.events.values()))  # type: ignore[index]
        await feed.stop()
        await drop_slot(db, slot_name_for(TRIGGER))
    assert [(e.data["table"], e.data["op"], e.data["key"]) for e in stored(fake_store)] == [  # type: ignore[index]
        ("app.a", "INSERT", {"id": 1}), ("app.b", "INSERT", {"id": 2}), ("app.b", "DELETE", {"id": 2}),
        ("app.a", "INSERT", {"id": 99})]


async def test_snapshot_emits_existing_rows_first_and_nothing_twice(
        pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    await db.execute("INSERT INTO orders SELECT i, 'old', i FROM generate_series(1, 50) i")
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit, snapshot=True)
        await feed.start(emit)  # returns after the snapshot
        await db.execute("UPDATE orders SET qty = 0 WHERE id = 1")
        await wait_until(lambda: len(emit.returned) == 51)
        await feed.stop()
        again = feed_for(pg_dsn, tg, emit, snapshot=True)  # the slot exists: no second snapshot
        await again.start(emit)
        await db.execute("DELETE FROM orders WHERE id = 2")
        await wait_until(lambda: len(emit.returned) == 52)
        await again.stop()
        await drop_slot(db, slot_name_for(TRIGGER))
    events = list(fake_store.events.values())
    assert [(e.data["op"], e.data["key"]["id"]) for e in events] == (  # type: ignore[index]
        [("SNAPSHOT", i) for i in range(1, 51)] + [("UPDATE", 1), ("DELETE", 2)])
    assert events[0].data["row"] == {"id": 1, "item": "old", "qty": 1} and events[0].data["lsn"] is None  # type: ignore[index]
    assert emit.returned == [True] * 52


async def test_idle_table_slot_still_advances_and_reports_its_lag(
        pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    await db.execute("CREATE TABLE busy (n int)")
    emit = StoreEmit(fake_store, TRIGGER)
    slot = slot_name_for(TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit, heartbeatMs=100)
        await feed.start(emit)
        start = lsn_int(await db.fetchval("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                          "WHERE slot_name = $1", slot))
        await db.execute("INSERT INTO busy SELECT generate_series(1, 20000)")  # WAL the feed does not want
        written = lsn_int(await db.fetchval("SELECT pg_current_wal_insert_lsn()::text"))  # written once flushed

        async def confirmed() -> int:
            return lsn_int(await db.fetchval("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                             "WHERE slot_name = $1", slot))
        async with asyncio.timeout(20):
            while await confirmed() < written:
                await asyncio.sleep(0.05)
        await wait_until(lambda: feed.gauges().get("confirmedLsn", 0) >= written)
        gauges = feed.gauges()
        now = lsn_int(await db.fetchval("SELECT pg_current_wal_lsn()::text"))
        await feed.stop()
        await drop_slot(db, slot)
    assert fake_store.events == {} and start < written
    assert set(gauges) == {"slotLagBytes", "slotRetainedBytes", "confirmedLsn"}
    # Measured as the server's WAL position minus the slot's confirmed one (other databases of the
    # shared server write WAL too, so it is bounded by a later reading, not by our own writes).
    assert 0 <= gauges["slotLagBytes"] <= now - gauges["confirmedLsn"]
    assert gauges["slotRetainedBytes"] >= gauges["slotLagBytes"]


def manager_for(store: FakeStore) -> FeedManager:
    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        return await store.accept(Acceptance(event=event, cursor=cursor))
    return FeedManager(store, fire, kinds=FEED_KINDS, clock=SYSTEM_CLOCK)


def call(event: str, trigger: str = TRIGGER, **params: object) -> dict[str, object]:
    return {"lifecycleEvent": event, "triggerName": trigger, "authKey": "uuid:key", **params}


async def slots(db: asyncpg.Connection) -> list[str]:
    return [r["slot_name"] for r in await db.fetch(
        "SELECT slot_name FROM pg_replication_slots WHERE database = current_database() ORDER BY 1")]


async def test_create_read_delete_drops_the_slot_and_an_orphan_is_reported_at_start(
        pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore, caplog: pytest.LogCaptureFixture) -> None:
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store)
        await manager.start(tg)
        created = await manager.lifecycle("guest", "uuid:key", FEED, call("CREATE", dsn=pg_dsn, table="orders",
                                                                          mode="logical"))
        await db.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
        await wait_until(lambda: len(fake_store.events) == 1)
        await wait_until(lambda: "slotLagBytes" in manager.metrics(TRIGGER).gauges)
        read = await manager.lifecycle("guest", "uuid:key", FEED, call("READ"))
        present = await slots(db)
        deleted = await manager.lifecycle("guest", "uuid:key", FEED, call("DELETE"))
        after_delete = await slots(db)
        await manager.stop()
    assert created == {"triggerName": TRIGGER, "status": "active"}
    assert read["config"] == {  # type: ignore[index]
        "name": "orders", "namespace": "guest", "dsn": redact_dsn(pg_dsn), "table": "orders",
        "operations": ["INSERT", "UPDATE", "DELETE"], "slot": slot_name_for(TRIGGER), "snapshot": False,
        "heartbeatMs": 10000, "pollMs": 100, "mode": "logical"}
    assert set(read["metrics"]) == {"received", "fired", "rejected", "slotLagBytes",  # type: ignore[arg-type]
                                    "slotRetainedBytes", "confirmedLsn"}
    assert (present, deleted, after_delete) == ([slot_name_for(TRIGGER)], {"triggerName": TRIGGER, "status": "deleted"}, [])

    # A slot named like ours that no registration owns is reported when a hub starts.
    await db.execute("SELECT pg_create_logical_replication_slot('triggerhub_left_behind', 'wal2json')")
    await db.execute("SELECT pg_create_logical_replication_slot('triggerhub_kept', 'wal2json')")
    await fake_store.put_feed(kept_registration(pg_dsn))
    caplog.set_level(logging.WARNING, logger="triggerhub.feeds.pg_logical")
    async with asyncio.TaskGroup() as tg:
        restarted = manager_for(fake_store)
        await restarted.start(tg)
        await wait_until(lambda: "triggerhub_left_behind" in caplog.text)
        await restarted.stop()
    await drop_slot(db, "triggerhub_left_behind")
    await drop_slot(db, "triggerhub_kept")
    location = parse_logical_config({"dsn": pg_dsn, "table": "x"}, TRIGGER).location
    orphan = [r.getMessage() for r in caplog.records if "left_behind" in r.getMessage()]
    assert len(orphan) == 1 and re.fullmatch(
        rf"replication slot triggerhub_left_behind in {re.escape(location)} belongs to no feed of this hub and "
        r"holds \d+ bytes of WAL; if no other hub uses it, drop it with "
        r"SELECT pg_drop_replication_slot\('triggerhub_left_behind'\)", orphan[0]), orphan
    assert "triggerhub_kept" not in caplog.text


def kept_registration(pg_dsn: str) -> FeedRegistration:
    """A paused logical registration owning slot triggerhub_kept (so that slot is no orphan)."""
    config = parse_logical_config({"dsn": pg_dsn, "table": "orders", "slot": "triggerhub_kept"}, "/guest/kept").to_json()
    return FeedRegistration(trigger="/guest/kept", feed=FEED, namespace="guest", config={**config, "mode": "logical"},
                            created_ms=1, updated_ms=1, status="paused", reason="paused by PAUSE")


async def create_error(store: FakeStore, trigger: str = TRIGGER, **params: object) -> str:
    """The message of a CREATE that must fail; nothing of it may stay registered."""
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(store)
        await manager.start(tg)
        with pytest.raises(BadRequest) as refused:
            await manager.lifecycle("guest", "uuid:key", FEED, call("CREATE", trigger, **params))
        await manager.stop()
    assert trigger not in store.feeds
    return refused.value.message


async def test_errors_name_the_value_and_what_to_do(pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    location = parse_logical_config({"dsn": pg_dsn, "table": "x"}, TRIGGER).location
    prefix = f"feed {FEED} for trigger '{TRIGGER}' could not start: "
    assert await create_error(fake_store, dsn=pg_dsn, table="orders", mode="stream") == (
        "mode parameter 'stream' must be one of outbox, logical (default outbox)")
    assert await create_error(fake_store, dsn=pg_dsn, table="public.nope", mode="logical") == (
        f"{prefix}table 'public.nope' does not exist in {location}; create it first or fix the table parameter "
        "(tables there: public.orders)")
    assert await create_error(fake_store, dsn=pg_dsn, table="nope.*", mode="logical") == (
        f"{prefix}schema 'nope' of table parameter 'nope.*' does not exist in {location}; create it first or fix "
        "the table parameter")
    assert await slots(db) == []


async def test_a_role_without_replication_rights_is_told_how_to_get_them(
        pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    role = f"th_norepl_{random.randrange(16**8):08x}"
    await db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOREPLICATION")
    try:
        plain = pg_dsn.replace(pg_dsn.split("://", 1)[1].split("@", 1)[0], f"{role}:pw")
        location = parse_logical_config({"dsn": plain, "table": "x"}, TRIGGER).location
        assert await create_error(fake_store, dsn=plain, table="orders", mode="logical") == (
            f"feed {FEED} for trigger '{TRIGGER}' could not start: role '{role}' at {location} may not use "
            f"replication slots; a superuser can grant it with ALTER ROLE {role} REPLICATION, or use mode outbox")
    finally:
        await db.execute(f"DROP ROLE {role}")
    assert await slots(db) == []


async def test_a_slot_in_use_by_another_feed_is_refused(pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    slot = slot_name_for(TRIGGER)
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit)
        await feed.start(emit)
        pid = await db.fetchval("SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                                f"triggerhub {TRIGGER}")
        message = await create_error(fake_store, "/guest/second", dsn=pg_dsn, table="orders", mode="logical", slot=slot)
        await feed.stop()
        await drop_slot(db, slot)
    location = parse_logical_config({"dsn": pg_dsn, "table": "x"}, TRIGGER).location
    assert message == (
        f"feed {FEED} for trigger '/guest/second' could not start: replication slot '{slot}' in {location} is in "
        f"use by another process (PostgreSQL pid {pid} (triggerhub {TRIGGER})); stop the feed or client that reads "
        "it, or give this feed its own slot with the slot parameter")


async def test_update_moves_the_feed_to_another_table_on_the_same_slot(
        pg_dsn: str, db: asyncpg.Connection, fake_store: FakeStore) -> None:
    await db.execute("CREATE TABLE refunds (id int PRIMARY KEY)")
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store)
        await manager.start(tg)
        await manager.lifecycle("guest", "uuid:key", FEED, call("CREATE", dsn=pg_dsn, table="orders", mode="logical",
                                                                pollMs=POLL_MS))
        await db.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
        await wait_until(lambda: len(fake_store.events) == 1)
        updated = await manager.lifecycle("guest", "uuid:key", FEED, call("UPDATE", table="refunds"))
        await db.execute("INSERT INTO orders VALUES (2, 'pear', 1)")  # no longer followed
        await db.execute("INSERT INTO refunds VALUES (7)")
        await wait_until(lambda: len(fake_store.events) == 2)
        present = await slots(db)
        await manager.lifecycle("guest", "uuid:key", FEED, call("DELETE"))
        await manager.stop()
    assert updated == {"triggerName": TRIGGER, "status": "active"}
    assert [(e.data["table"], e.data["key"]) for e in stored(fake_store)] == [  # type: ignore[index]
        ("public.orders", {"id": 1}), ("public.refunds", {"id": 7})]
    assert fake_store.feeds == {} and present == [slot_name_for(TRIGGER)] and await slots(db) == []
