"""SQLite change feed against real database files: row changes in commit order across a stop
and changes made while stopped, pruning, errors, and removing what the feed installed.

The clock is the system clock: SQLite cannot notify another connection, so the feed polls
PRAGMA data_version every POLL_S.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.waiting import wait_quiet, wait_until
from triggerhub.errors import BadRequest, FeedError
from triggerhub.clock import SYSTEM_CLOCK
from triggerhub.feeds.sqlite import SqliteFeed, parse_sqlite_config, uninstall

TRIGGER = "/guest/items"
QUIET_S = 1.0  # no new event for this long (and the changelog drained) means the feed is idle

Change = tuple[str, int]  # (op, id) of one row change, as the writer made it


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, photo BLOB)")
        conn.execute("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    conn.close()
    yield path


def feed_for(database: Path, tg: asyncio.TaskGroup, emit: StoreEmit, trigger: str = TRIGGER,
             **params: object) -> SqliteFeed:
    config = parse_sqlite_config({"database": str(database), "table": "items", **params})
    return SqliteFeed(config, trigger=trigger, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=emit.load)


def mixed_transactions(seed: int) -> list[list[tuple[str, int]]]:
    """1,000 inserts, 200 updates and 100 deletes, shuffled into transactions of 1 to 25 changes;
    updates and deletes touch only rows inserted earlier and not yet deleted."""
    rng = random.Random(seed)
    others = ["UPDATE"] * 200 + ["DELETE"] * 100
    rng.shuffle(others)
    order: list[str] = []
    for index in range(1000):
        order.append("INSERT")
        if index >= 100 and others and rng.random() < 0.3:
            order.append(others.pop())
    order += others
    live: list[int] = []
    next_id, changes = 1, []
    for op in order:
        if op == "INSERT":
            changes.append((op, next_id))
            live.append(next_id)
            next_id += 1
        else:
            row_id = live.pop(rng.randrange(len(live))) if op == "DELETE" else rng.choice(live)
            changes.append((op, row_id))
    transactions, at = [], 0
    while at < len(changes):
        size = rng.randint(1, 25)
        transactions.append(changes[at:at + size])
        at += size
    return transactions


def apply(database: Path, transactions: list[list[tuple[str, int]]]) -> None:
    """Commit each transaction through the user's own connection, as the application would."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        for transaction in transactions:
            conn.execute("BEGIN IMMEDIATE")
            for op, row_id in transaction:
                if op == "INSERT":
                    conn.execute("INSERT INTO items VALUES (?, ?, ?, ?)", (row_id, f"item-{row_id}", 1, b"\x00\xff"))
                elif op == "UPDATE":
                    conn.execute("UPDATE items SET qty = qty + 1 WHERE id = ?", (row_id,))
                else:
                    conn.execute("DELETE FROM items WHERE id = ?", (row_id,))
            conn.execute("COMMIT")
    finally:
        conn.close()


def stored_changes(store: FakeStore) -> list[Change]:
    events = sorted(store.events.values(), key=lambda e: e.data["id"])  # type: ignore[index]
    return [(e.data["op"], e.data["key"]["id"]) for e in events]  # type: ignore[index]


def changelog_rows(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM triggerhub_changes").fetchone()[0])


async def wait_drained(store: FakeStore, database: Path, *, expect: int, timeout_s: float = 30.0) -> None:
    """Until `expect` events are stored, the changelog is drained and nothing new came for QUIET_S."""
    async def stored() -> int:
        return len(store.events)

    await wait_quiet(stored, lambda count: count >= expect and changelog_rows(database) == 0,
                     quiet_s=QUIET_S, timeout_s=timeout_s, interval_s=0.05)


@pytest.mark.timeout(60)
async def test_mixed_transactions_arrive_once_each_in_commit_order_across_a_stop(
        database: Path, fake_store: FakeStore) -> None:
    transactions = mixed_transactions(seed=16)
    expected = [change for transaction in transactions for change in transaction]
    assert [op for op, _ in expected].count("INSERT") == 1000 and len(expected) == 1300
    half = len(transactions) // 2
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(database, tg, emit)
        await feed.start(emit)
        writer = asyncio.create_task(asyncio.to_thread(apply, database, transactions[:half]))
        await wait_until(lambda: len(fake_store.events) >= 100)
        await feed.stop()  # mid-stream: the writer is still committing
        await writer
        stopped_at = len(fake_store.events)
        apply(database, transactions[half:])  # while no feed runs
        assert len(fake_store.events) == stopped_at
        assert stopped_at < len(expected)
        restarted = feed_for(database, tg, emit)
        await restarted.start(emit)
        await wait_drained(fake_store, database, expect=len(expected))
        await restarted.stop()
    assert stored_changes(fake_store) == expected
    assert emit.returned == [True] * len(expected), "no change was emitted twice"
    first = min(fake_store.events.values(), key=lambda e: e.data["id"])  # type: ignore[index]
    assert first.data == {  # type: ignore[comparison-overlap]
        "table": "items", "op": "INSERT", "rowid": 1, "key": {"id": 1},
        "row": {"id": 1, "name": "item-1", "qty": 1, "photo": "00FF"}, "old": None,
        "id": first.data["id"], "at": first.data["at"]}  # type: ignore[index]
    assert (first.source, first.type, first.subject) == (f"sqlite://{database}", "triggerhub.feed.sqlite.change",
                                                         "items")


async def test_update_and_delete_carry_old_row_and_operations_filter(database: Path, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(database, tg, emit, operations="update,DELETE")
        await feed.start(emit)
        apply(database, [[("INSERT", 7)], [("UPDATE", 7)], [("DELETE", 7)]])
        await wait_drained(fake_store, database, expect=2)
        await feed.stop()
    events = sorted(fake_store.events.values(), key=lambda e: e.data["id"])  # type: ignore[index]
    assert [(e.data["op"], e.data["row"], e.data["old"]) for e in events] == [  # type: ignore[index]
        ("UPDATE", {"id": 7, "name": "item-7", "qty": 2, "photo": "00FF"},
         {"id": 7, "name": "item-7", "qty": 1, "photo": "00FF"}),
        ("DELETE", None, {"id": 7, "name": "item-7", "qty": 2, "photo": "00FF"}),
    ]


async def test_missing_file_and_unknown_table_are_clear_errors(database: Path, fake_store: FakeStore,
                                                               tmp_path: Path) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        missing = tmp_path / "nope.db"
        with pytest.raises(FeedError) as gone:
            await feed_for(missing, tg, emit).start(emit)
        assert str(gone.value) == (f"SQLite database '{missing}' does not exist; create it first or fix the "
                                   "database parameter")
        assert not missing.exists(), "the feed never creates the user's file"
        config = parse_sqlite_config({"database": str(database), "table": "orders"})
        with pytest.raises(FeedError) as unknown:
            await SqliteFeed(config, trigger=TRIGGER, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=emit.load).start(emit)
        assert str(unknown.value) == (f"table 'orders' does not exist in {database}; known: items, other; "
                                      "create it first or fix the table parameter")
    with pytest.raises(BadRequest) as relative:
        parse_sqlite_config({"database": "app.db", "table": "items"})
    assert relative.value.message == ("database parameter 'app.db' must be the absolute path of a SQLite file, "
                                      "like /var/lib/app/app.db")
    with pytest.raises(BadRequest) as ops:
        parse_sqlite_config({"database": str(database), "table": "items", "operations": ["TRUNCATE"]})
    assert ops.value.message == "operations parameter '['TRUNCATE']' must list some of INSERT, UPDATE, DELETE"


async def test_two_feeds_share_the_changelog_and_delete_removes_what_was_installed(
        database: Path, fake_store: FakeStore) -> None:
    first, second = StoreEmit(fake_store, "/guest/a"), StoreEmit(fake_store, "/guest/b")
    async with asyncio.TaskGroup() as tg:
        feed_a = feed_for(database, tg, first, trigger="/guest/a")
        feed_b = feed_for(database, tg, second, trigger="/guest/b")
        await feed_a.start(first)
        await feed_b.start(second)
        apply(database, [[("INSERT", 1), ("INSERT", 2)]])
        await wait_drained(fake_store, database, expect=4)
        await feed_a.stop()
        await feed_b.stop()
    assert sorted(e.id.rsplit(":", 1)[1] for e in fake_store.events.values()) == ["1", "1", "2", "2"]
    config = parse_sqlite_config({"database": str(database), "table": "items"})

    def installed() -> list[str]:
        with sqlite3.connect(database) as conn:
            return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'triggerhub%' "
                                               "ORDER BY name")]
    await uninstall(config, "/guest/a")
    assert installed() == ["triggerhub_changes", "triggerhub_changes_by_table", "triggerhub_delete_items",
                           "triggerhub_insert_items", "triggerhub_subscriptions", "triggerhub_update_items"]
    await uninstall(config, "/guest/b")
    assert installed() == []
    apply(database, [[("INSERT", 3)]])  # the application's writes still work without our triggers


async def test_cancelling_a_write_blocked_by_the_application_is_not_swallowed(database: Path) -> None:
    """A feed stopped while its prune waits for the application's write lock must stop: a failed
    ROLLBACK after the cancelled BEGIN must not replace the CancelledError."""
    import aiosqlite

    from triggerhub.feeds.sqlite import _write_transaction

    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the application holds the write lock
    conn = await aiosqlite.connect(database, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout=300")
    entered = False

    async def write() -> None:
        nonlocal entered
        async with _write_transaction(conn):
            entered = True
    try:
        task = asyncio.create_task(write())
        for _ in range(3):
            await asyncio.sleep(0)  # the task is now waiting for BEGIN IMMEDIATE in aiosqlite's thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not entered
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        await conn.close()
