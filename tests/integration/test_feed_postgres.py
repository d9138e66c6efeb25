"""PostgreSQL change feed against the real server on loopback: row changes in commit order,
changes made while the feed is stopped, out-of-order commits, and the feed lifecycle.

The clock is a TestClock that never advances: the safety-net poll never runs, so every change
here is found through LISTEN/NOTIFY or the read at start.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.plugins.clock import TestClock
from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.waiting import wait_until
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.engine.feed_manager import FeedManager
from triggerhub.errors import BadRequest, NotFound
from triggerhub.feeds.postgres import FEED_KIND as POSTGRES_KIND
from triggerhub.feeds.postgres import PostgresFeed, parse_postgres_config, redact_dsn
from triggerhub.model import TriggerEvent
from triggerhub.store.base import Acceptance

pytestmark = pytest.mark.postgres
TRIGGER = "/guest/orders"


def feed_for(pg_dsn: str, tg: asyncio.TaskGroup, emit: StoreEmit, trigger: str = TRIGGER,
             **params: object) -> PostgresFeed:
    config = parse_postgres_config({"dsn": pg_dsn, "table": "orders", **params})
    return PostgresFeed(config, trigger=trigger, clock=TestClock(0.0), tasks=tg, load_cursor=emit.load)


def changes(store: FakeStore) -> list[tuple[str, object, object]]:
    """(op, row, old) of every stored event, in outbox id order."""
    events = sorted(store.events.values(), key=lambda e: e.data["id"])  # type: ignore[index]
    return [(e.data["op"], e.data["row"], e.data["old"]) for e in events]  # type: ignore[index]


async def test_inserts_updates_and_deletes_arrive_once_each_in_order(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        keeper = StoreEmit(fake_store, "/guest/keeper")  # subscribed, then stopped: the outbox rows stay
        keeper_feed = feed_for(pg_dsn, tg, keeper, trigger="/guest/keeper")
        await keeper_feed.start(keeper)
        await keeper_feed.stop()
        feed = feed_for(pg_dsn, tg, emit)
        await feed.start(emit)
        await orders_db.execute("INSERT INTO orders VALUES (1, 'apple', 3), (2, 'pear', 1)")
        await orders_db.execute("UPDATE orders SET qty = 5 WHERE id = 1")
        await orders_db.execute("DELETE FROM orders WHERE id = 2")
        await wait_until(lambda: len(emit.returned) == 4)
        await feed.stop()
    assert changes(fake_store) == [
        ("INSERT", {"id": 1, "item": "apple", "qty": 3}, None),
        ("INSERT", {"id": 2, "item": "pear", "qty": 1}, None),
        ("UPDATE", {"id": 1, "item": "apple", "qty": 5}, {"id": 1, "item": "apple", "qty": 3}),
        ("DELETE", None, {"id": 2, "item": "pear", "qty": 1}),
    ]
    assert emit.returned == [True] * 4
    first = min(fake_store.events.values(), key=lambda e: e.data["id"])  # type: ignore[index]
    outbox_id, at = await orders_db.fetchrow("SELECT id, at FROM triggerhub_changes ORDER BY id LIMIT 1")
    assert first.id.startswith("pg:") and first.id.endswith(f":public.orders:{outbox_id}")
    assert (first.source, first.subject, first.type, first.data["table"], first.data["at"]) == (  # type: ignore[index]
        f"postgresql://{parse_postgres_config({'dsn': pg_dsn, 'table': 'orders'}).location}", "public.orders",
        "triggerhub.feed.postgres.change", "public.orders",
        at.isoformat(timespec="microseconds").replace("+00:00", "Z"))


async def test_changes_made_while_stopped_arrive_after_start_none_twice(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit)
        await feed.start(emit)
        await orders_db.execute("INSERT INTO orders VALUES (0, 'first', 0)")
        await wait_until(lambda: len(emit.returned) == 1)
        await feed.stop()
        for i in range(1, 21):
            await orders_db.execute("INSERT INTO orders VALUES ($1, 'later', $1)", i)
        again = feed_for(pg_dsn, tg, emit)
        await again.start(emit)
        await wait_until(lambda: len(emit.returned) >= 21)
        await orders_db.execute("INSERT INTO orders VALUES (99, 'after restart', 99)")  # still listening
        await wait_until(lambda: len(emit.returned) >= 22)
        await again.stop()
    assert [row["id"] for _, row, _ in changes(fake_store)] == [*range(21), 99]  # type: ignore[index]
    assert emit.returned == [True] * 22


async def test_a_change_committed_after_a_later_id_is_not_skipped(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    slow = await asyncpg.connect(pg_dsn)
    try:
        async with asyncio.TaskGroup() as tg:
            feed = feed_for(pg_dsn, tg, emit)
            await feed.start(emit)
            transaction = slow.transaction()
            await transaction.start()
            await slow.execute("INSERT INTO orders VALUES (1, 'slow', 1)")  # takes the smaller outbox id
            await orders_db.execute("INSERT INTO orders VALUES (2, 'fast', 2)")  # larger id, committed first
            await wait_until(lambda: len(emit.returned) == 1)
            await transaction.commit()
            await wait_until(lambda: len(emit.returned) == 2)
            await feed.stop()
    finally:
        await slow.close()
    by_arrival = [e.data["row"]["item"] for e in fake_store.events.values()]  # type: ignore[index]
    assert (by_arrival, emit.returned) == (["fast", "slow"], [True, True])


async def test_operations_and_columns_filter_the_events(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(pg_dsn, tg, emit, operations=["update", "DELETE"], columns=["id", "qty"])
        await feed.start(emit)
        await orders_db.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
        await orders_db.execute("UPDATE orders SET qty = 4 WHERE id = 1")
        await orders_db.execute("DELETE FROM orders WHERE id = 1")
        await wait_until(lambda: len(emit.returned) == 2)
        await feed.stop()
    assert changes(fake_store) == [("UPDATE", {"id": 1, "qty": 4}, {"id": 1, "qty": 3}),
                                   ("DELETE", None, {"id": 1, "qty": 4})]


async def test_two_triggers_on_one_table_both_fire(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    emits = [StoreEmit(fake_store, TRIGGER), StoreEmit(fake_store, "/guest/audit")]
    async with asyncio.TaskGroup() as tg:
        feeds = [feed_for(pg_dsn, tg, emits[0]), feed_for(pg_dsn, tg, emits[1], trigger="/guest/audit")]
        for feed, emit in zip(feeds, emits):
            await feed.start(emit)
        await orders_db.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
        await wait_until(lambda: len(emits[0].returned) == 1 and len(emits[1].returned) == 1)
        for feed in feeds:
            await feed.stop()
    assert sorted(str(e.trigger) for e in fake_store.events.values()) == ["/guest/audit", "/guest/orders"]
    assert await orders_db.fetchval("SELECT count(*) FROM pg_trigger WHERE tgname = 'triggerhub_changes'") == 1


async def test_outbox_rows_are_pruned_once_every_subscriber_delivered_them(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    orders, audit = StoreEmit(fake_store, TRIGGER), StoreEmit(fake_store, "/guest/audit")
    async with asyncio.TaskGroup() as tg:
        audit_feed = feed_for(pg_dsn, tg, audit, trigger="/guest/audit")
        await audit_feed.start(audit)
        await audit_feed.stop()  # subscribed, but not reading while the rows arrive
        orders_feed = feed_for(pg_dsn, tg, orders)
        await orders_feed.start(orders)
        await orders_db.execute("INSERT INTO orders VALUES (1, 'apple', 3), (2, 'pear', 1)")
        await orders_db.execute("DELETE FROM orders WHERE id = 2")
        await wait_until(lambda: len(orders.returned) == 3)
        delivered = "SELECT delivered FROM triggerhub_subscriptions WHERE subscriber = $1"
        async with asyncio.timeout(30):
            while await orders_db.fetchval("SELECT count(*) FROM triggerhub_changes c WHERE pg_visible_in_snapshot("
                                    "c.txid, $1::text::pg_snapshot)", await orders_db.fetchval(delivered, TRIGGER) or
                                    "1:1:") != 3:
                await asyncio.sleep(0.05)  # until /guest/orders has recorded all three as delivered
        assert await orders_db.fetchval("SELECT count(*) FROM triggerhub_changes") == 3, "audit has not read them yet"
        audit_again = feed_for(pg_dsn, tg, audit, trigger="/guest/audit")
        await audit_again.start(audit)
        await wait_until(lambda: len(audit.returned) == 3)
        async with asyncio.timeout(30):
            while await orders_db.fetchval("SELECT count(*) FROM triggerhub_changes") != 0:
                await asyncio.sleep(0.05)
        await orders_db.execute("INSERT INTO orders VALUES (3, 'fig', 2)")  # later rows still flow after a prune
        await wait_until(lambda: len(orders.returned) == 4 and len(audit.returned) == 4)
        await orders_feed.stop()
        await audit_again.stop()
    assert orders.returned == [True] * 4 and audit.returned == [True] * 4


# --------------------------------------------------------------------------- the lifecycle


def manager_for(store: FakeStore, *refusals: Exception) -> FeedManager:
    """A manager over `store` whose fire raises `refusals` in turn before it stores."""
    pending = list(refusals)

    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        if pending:
            raise pending.pop(0)
        return await store.accept(Acceptance(event=event, cursor=cursor))
    return FeedManager(store, fire, kinds=FEED_KINDS, clock=TestClock(0.0))


def call(event: str, **params: object) -> dict[str, object]:
    return {"lifecycleEvent": event, "triggerName": TRIGGER, "authKey": "uuid:key", **params}


async def test_create_read_delete_through_the_manager(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store)
        await manager.start(tg)
        created = await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn,
                                          call("CREATE", dsn=pg_dsn, table="public.orders", operations="INSERT"))
        await orders_db.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
        await wait_until(lambda: len(fake_store.events) == 1)
        read = await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn, call("READ"))
        deleted = await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn, call("DELETE"))
        await manager.stop()
    assert created == {"triggerName": TRIGGER, "status": "active"}
    assert read["config"] == {"name": "orders", "namespace": "guest", "dsn": redact_dsn(pg_dsn),  # type: ignore[index]
                              "table": "public.orders", "operations": ["INSERT"], "columns": None, "mode": "outbox"}
    assert ":********@" in str(redact_dsn(pg_dsn)) and str(redact_dsn(pg_dsn)) != pg_dsn
    assert deleted == {"triggerName": TRIGGER, "status": "deleted"}
    assert await orders_db.fetchval("SELECT count(*) FROM pg_trigger WHERE tgname = 'triggerhub_changes'") == 0
    assert await orders_db.fetchval("SELECT count(*) FROM triggerhub_changes") == 0  # the last subscriber took its rows


async def test_a_refused_change_pauses_the_feed_and_arrives_once_after_unpause(
        pg_dsn: str, orders_db: asyncpg.Connection, fake_store: FakeStore) -> None:
    reason = f"trigger {TRIGGER} does not exist; delete its feed or recreate the trigger"
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store, NotFound(reason))
        await manager.start(tg)
        await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn, call("CREATE", dsn=pg_dsn, table="orders"))
        await orders_db.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
        await wait_until(lambda: fake_store.feeds[TRIGGER].status == "paused")
        read = await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn, call("READ"))
        status = read["status"]
        assert isinstance(status, dict) and (status["active"], status["reason"]) == (False, reason)
        assert (fake_store.events, fake_store.cursors) == ({}, {})  # the cursor stayed before the change
        await orders_db.execute("INSERT INTO orders VALUES (2, 'pear', 1)")  # while paused: waits in the outbox
        await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn, call("UNPAUSE"))
        await wait_until(lambda: len(fake_store.events) == 2)
        await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn, call("DELETE"))
    assert changes(fake_store) == [("INSERT", {"id": 1, "item": "apple", "qty": 3}, None),
                                   ("INSERT", {"id": 2, "item": "pear", "qty": 1}, None)]


async def test_create_of_a_missing_table_fails_naming_it(pg_dsn: str, orders_db: asyncpg.Connection,
                                                         fake_store: FakeStore) -> None:
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store)
        await manager.start(tg)
        with pytest.raises(BadRequest) as caught:
            await manager.lifecycle("guest", "uuid:key", POSTGRES_KIND.fqn,
                                    call("CREATE", dsn=pg_dsn, table="shop.nope"))
    location = parse_postgres_config({"dsn": pg_dsn, "table": "x"}).location
    assert caught.value.message == (f"feed {POSTGRES_KIND.fqn} for trigger '{TRIGGER}' could not start: table 'shop.nope' "
                                    f"does not exist in {location}; create it first or fix the table parameter")
    assert fake_store.feeds == {}


@pytest.mark.parametrize(("params", "message"), [
    ({"dsn": "postgresql://u:hunter2@h:5432/", "table": "t"},
     "dsn parameter 'postgresql://u:********@h:5432/' must be a URL like postgresql://user:password@host:5432/database"),
    ({"dsn": "postgresql://h/db", "table": "a;drop"},
     "table parameter 'a;drop' must name a table like orders or public.orders"),
    ({"dsn": "postgresql://h/db", "table": "t", "operations": ["INSERT", "TRUNCATE"]},
     "operations parameter '['INSERT', 'TRUNCATE']' must list some of INSERT, UPDATE, DELETE"),
    ({"dsn": "postgresql://h/db", "table": "t", "columns": [1]},
     "columns parameter '[1]' must be a list of column names"),
])
def test_bad_parameters_are_refused_naming_the_value(params: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_postgres_config(params)  # type: ignore[arg-type]
    assert caught.value.message == message
