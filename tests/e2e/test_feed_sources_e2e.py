"""The SQLite change feed, the PostgreSQL feed in logical mode and the Kafka topic feed through `triggerhub up` as a user runs it:
created with the feed lifecycle, the hub killed with SIGKILL mid-stream and started again, and
every change or record found exactly once in the hub's event log afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.test_feed_kafka import make_topic, produce
from tests.integration.test_feed_pg_logical import mixed_transactions as pg_transactions
from tests.integration.test_feed_sqlite import apply, changelog_rows, mixed_transactions
from tests.plugins.cli import HubProcess
from tests.plugins.services import asyncpg_dsn
from tests.plugins.waiting import wait_quiet
from triggerhub.feeds.pg_logical import slot_name_for
from triggerhub.feeds.pg_slots import lsn_int

QUIET_S = 1.0  # no new event for this long (and the source drained) means the hub is idle


async def call(hub: HubProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    token = base64.b64encode(hub.auth.encode()).decode()
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{hub.apihost}/api/v1/{path}", json=body, params={"blocking": "true"},
            headers={"Authorization": f"Basic {token}"}) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def create_feed(hub: HubProcess, trigger: str, feed: str, params: dict[str, Any]) -> dict[str, Any]:
    status, _ = await call(hub, "PUT", f"namespaces/_/triggers/{trigger}",
                           {"annotations": [{"key": "feed", "value": feed}]})
    assert status == 200
    namespace, package, action = feed.strip("/").split("/")
    status, created = await call(hub, "POST", f"namespaces/{namespace}/actions/{package}/{action}",
                                 {"lifecycleEvent": "CREATE", "triggerName": f"/_/{trigger}", "authKey": hub.auth,
                                  **params})
    assert status == 200, created
    result: dict[str, Any] = created["response"]["result"]
    return result


def stored_events(hub: HubProcess, trigger: str) -> list[dict[str, Any]]:
    """The hub's event log for `trigger`, read from its SQLite store as another process would."""
    with sqlite3.connect(f"file:{hub.home / 'triggerhub.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT doc FROM events WHERE trigger_fqn = ?", (trigger,)).fetchall()
    conn.close()
    return [json.loads(row[0]) for row in rows]


def stored_cursor(hub: HubProcess, key: str) -> str | None:
    with sqlite3.connect(f"file:{hub.home / 'triggerhub.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM cursors WHERE feed_id = ?", (key,)).fetchone()
    conn.close()
    return str(row[0]) if row is not None else None


async def wait_drained(count: Callable[[], int], drained: Callable[[], bool], *, timeout_s: float = 40.0) -> None:
    """Until `drained()` holds and `count()` did not change for QUIET_S."""
    async def counted() -> int:
        return count()

    await wait_quiet(counted, lambda _: drained(), quiet_s=QUIET_S, timeout_s=timeout_s, interval_s=0.1)


@pytest.mark.timeout(60)
async def test_sqlite_changes_survive_kill9_once_each_in_commit_order(hub_process: HubProcess, tmp_path: Path) -> None:
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, photo BLOB)")
    conn.close()
    created = await create_feed(hub_process, "changes", "/whisk.system/sqlite/changes",
                                {"database": str(database), "table": "items"})
    assert created == {"triggerName": "/guest/changes", "status": "active"}
    transactions = mixed_transactions(seed=61)
    expected = [change for transaction in transactions for change in transaction]
    half = len(transactions) // 2
    writer = asyncio.create_task(asyncio.to_thread(apply, database, transactions[:half]))
    async with asyncio.timeout(30):
        while len(stored_events(hub_process, "/guest/changes")) < 100:
            await asyncio.sleep(0.02)
    hub_process.kill9()  # mid-stream: the writer is still committing
    await writer
    apply(database, transactions[half:])  # while the hub is down
    assert len(stored_events(hub_process, "/guest/changes")) < len(expected)
    hub_process.start()
    await wait_drained(lambda: len(stored_events(hub_process, "/guest/changes")),
                     lambda: changelog_rows(database) == 0)
    events = sorted(stored_events(hub_process, "/guest/changes"), key=lambda e: e["data"]["id"])
    assert [(e["data"]["op"], e["data"]["key"]["id"]) for e in events] == expected, "each change once, in order"

    status, deleted = await call(hub_process, "POST", "namespaces/whisk.system/actions/sqlite/changes",
                                 {"lifecycleEvent": "DELETE", "triggerName": "/_/changes", "authKey": hub_process.auth})
    assert (status, deleted["response"]["result"]) == (200, {"triggerName": "/guest/changes", "status": "deleted"})
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'triggerhub%'").fetchall() == []
    conn.close()


@pytest.mark.postgres
@pytest.mark.timeout(90)
async def test_postgres_logical_changes_survive_kill9_once_each_in_commit_order(
        hub_process: HubProcess, fresh_pg_url: str) -> None:
    dsn = asyncpg_dsn(fresh_pg_url)
    db = await asyncpg.connect(dsn)
    try:
        await db.execute("CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int NOT NULL)")
        await db.execute("ALTER TABLE orders REPLICA IDENTITY FULL")
        created = await create_feed(hub_process, "orders", "/whisk.system/postgres/changes",
                                    {"dsn": dsn, "table": "orders", "mode": "logical"})
        assert created == {"triggerName": "/guest/orders", "status": "active"}
        rng, live = random.Random(1300), set[int]()
        writer = asyncio.create_task(pg_transactions(db, rng, inserts=range(500), updates=100, deletes=50, live=live))
        async with asyncio.timeout(30):
            while len(stored_events(hub_process, "/guest/orders")) < 100:
                await asyncio.sleep(0.02)
        hub_process.kill9()  # mid-stream: the writer is still committing
        expected = await writer
        expected += await pg_transactions(db, rng, inserts=range(500, 1000), updates=100, deletes=50, live=live)
        assert len(stored_events(hub_process, "/guest/orders")) < len(expected) == 1300
        hub_process.start()  # the changes made while it was down arrive now
        await wait_drained(lambda: len(stored_events(hub_process, "/guest/orders")),
                       lambda: len(stored_events(hub_process, "/guest/orders")) >= len(expected))
        events = sorted(stored_events(hub_process, "/guest/orders"),
                        key=lambda e: (lsn_int(e["data"]["lsn"]), e["data"]["seq"]))
        assert [(e["data"]["op"], e["data"]["key"]["id"]) for e in events] == expected, "each change once, in order"

        status, health = await call(hub_process, "GET", "status")  # what `triggerhub status` shows
        [feed] = health["components"]["feeds"]["feeds"]
        assert (status, feed["trigger"], feed["status"], feed["rejected"]) == (200, "/guest/orders", "active", 0)
        assert set(feed["gauges"]) == {"slotLagBytes", "slotRetainedBytes", "confirmedLsn"}
        assert feed["gauges"]["confirmedLsn"] > lsn_int(events[-1]["data"]["lsn"])

        status, deleted = await call(hub_process, "POST", "namespaces/whisk.system/actions/postgres/changes",
                                     {"lifecycleEvent": "DELETE", "triggerName": "/_/orders",
                                      "authKey": hub_process.auth})
        assert (status, deleted["response"]["result"]) == (200, {"triggerName": "/guest/orders", "status": "deleted"})
        assert await db.fetch("SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1",
                              slot_name_for("/guest/orders")) == []
    finally:
        await db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE database = current_database()")
        await db.close()


@pytest.mark.kafka
@pytest.mark.timeout(90)
async def test_kafka_records_survive_kill9_exact_counts_and_poison_in_read(
        hub_process: HubProcess, kafka_bootstrap: str) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    await make_topic(kafka_bootstrap, topic, 3)
    created = await create_feed(hub_process, "records", "/whisk.system/kafka/consume",
                                {"brokers": [kafka_bootstrap], "topics": [topic], "valueEncoding": "json",
                                 "maxBatchRecords": 500, "maxBatchWaitMs": 50})
    assert created == {"triggerName": "/guest/records", "status": "active"}

    def records() -> list[tuple[int, int]]:
        return [(m["partition"], m["offset"]) for e in stored_events(hub_process, "/guest/records")
                for m in e["data"]["messages"]]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        first = [json.dumps({"n": i}).encode() for i in range(5_000)]
        await produce(producer, topic, first, partitions=3)
        async with asyncio.timeout(30):
            while len(records()) < 1_000:
                await asyncio.sleep(0.02)
        hub_process.kill9()
        assert len(records()) < 5_000, "the kill must interrupt the stream"
        rest = [json.dumps({"n": i}).encode() for i in range(5_000, 10_000)]
        for i, value in enumerate(rest):  # continue the round-robin over the partitions while the hub is down
            await producer.send(topic, value, key=f"k{5_000 + i}".encode(), partition=(5_000 + i) % 3)
        await producer.flush()
        hub_process.start()
        ends = {p: len(range(p, 10_000, 3)) for p in range(3)}
        await wait_drained(lambda: len(records()), lambda: all(
            stored_cursor(hub_process, f"/guest/records#offset:{topic}:{p}") == str(end) for p, end in ends.items()))
        got = records()
        assert len(got) == 10_000 and len(set(got)) == 10_000, "every record once after the kill, none twice"

        await producer.send_and_wait(topic, b"not json", partition=1)
        await wait_drained(lambda: len(records()), lambda: stored_cursor(
            hub_process, f"/guest/records#offset:{topic}:1") == str(ends[1] + 1))
    finally:
        await producer.stop()
    status, read = await call(hub_process, "POST", "namespaces/whisk.system/actions/kafka/consume",
                              {"lifecycleEvent": "READ", "triggerName": "/_/records", "authKey": hub_process.auth})
    assert status == 200
    result = read["response"]["result"]
    assert result["metrics"]["deadLettered"] == 1
    assert result["deadLetters"]["count"] == 1
    [letter] = result["deadLetters"]["recent"]
    assert (letter["topic"], letter["partition"], letter["offset"], letter["value"]) == (
        topic, 1, ends[1], base64.b64encode(b"not json").decode())
    assert letter["error"] == ("value is not JSON (Expecting value: line 1 column 1 (char 0)); use valueEncoding "
                               "text or base64")
    assert len(records()) == 10_000
