"""Database change feeds (SQLite; PostgreSQL outbox and logical modes) and the Kafka topic feed:
rows/s and records/s from the source to the stored event.

    python bench/feed_sources.py [--rows N] [--records N] [--latency-rows N]

Both feeds emit into a real SQLite hub store (SqlStore on a fresh file; each emit is one accept:
event + cursor in one transaction). Each speed is reported with its floor measured in the same
run: the store accepting the same number of events one after another with no feed (what a feed
that emits one event at a time can reach at best), and for Kafka a bare aiokafka consumer reading
the same records without storing them. SQLite also reports commit-to-stored latency (p50, p99) of
single-row commits spaced apart; PostgreSQL does the same for each mode in a database created for
the run (needs TRIGGERHUB_TEST_PG_URL). The Kafka part needs TRIGGERHUB_TEST_KAFKA (host:port).
Both are read from the environment or .cache/services.env, and a part is skipped with a line when
its service is not configured. `python -m bench` runs the database part (scenario feeds.databases).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from triggerhub.clock import SYSTEM_CLOCK
from triggerhub.feeds.cursor import CursorFeed
from triggerhub.feeds.kafka import KafkaFeed, parse_kafka_config
from triggerhub.feeds.pg_logical import LogicalFeed, parse_logical_config
from triggerhub.feeds.postgres import PostgresFeed, parse_postgres_config
from triggerhub.feeds.sqlite import SqliteFeed, parse_sqlite_config
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

TRIGGER = "/guest/bench"
ROOT = Path(__file__).resolve().parents[1]
PG_MODES = ("outbox", "logical")


def service_setting(key: str) -> str | None:
    """A test service's address: the environment first, then .cache/services.env (scripts/services)."""
    if os.environ.get(key):
        return os.environ[key]
    env = ROOT / ".cache" / "services.env"
    lines = env.read_text().splitlines() if env.exists() else []
    return next((line.split("=", 1)[1] for line in lines if line.startswith(f"{key}=")), None)


class StoreSink:
    """The feed's emit and cursor callbacks, writing to a real store; records when each event landed."""

    def __init__(self, store: SqlStore, on_stored: Callable[[TriggerEvent], None] = lambda e: None) -> None:
        self.store = store
        self.on_stored = on_stored
        self.events = 0

    async def emit(self, event: TriggerEvent, cursor: tuple[str, str] | None = None) -> bool:
        full = (f"{TRIGGER}#{cursor[0]}", cursor[1]) if cursor else None
        stored = await self.store.accept(Acceptance(event=event, cursor=full))
        self.events += 1
        self.on_stored(event)
        return stored

    async def load(self, key: str) -> str | None:
        return await self.store.get_cursor(f"{TRIGGER}#{key}")

    async def save(self, key: str, value: str) -> None:
        await self.store.set_cursor(f"{TRIGGER}#{key}", value)


async def fresh_store(folder: Path, name: str) -> SqlStore:
    store = SqlStore(f"sqlite+aiosqlite:///{folder / name}")
    await store.open()
    return store


async def store_floor(folder: Path, count: int) -> float:
    """Events/s the store accepts one after another (event + cursor per transaction), no feed."""
    store = await fresh_store(folder, "floor.db")
    fqn = FullyQualifiedName.parse(TRIGGER, "_")
    try:
        start = time.perf_counter()
        for i in range(count):
            event = TriggerEvent(f"floor:{i}", "bench://floor", "bench", fqn, {"i": i})
            await store.accept(Acceptance(event=event, cursor=(f"{TRIGGER}#floor", str(i))))
        return count / (time.perf_counter() - start)
    finally:
        await store.close()


def make_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)")
    conn.close()


async def until(predicate: Callable[[], bool], timeout_s: float = 120.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


async def sqlite_throughput(folder: Path, rows: int) -> tuple[float, float]:
    """(rows/s from the first commit to the last stored event, seconds) for `rows` inserts in
    transactions of 100 made by another thread while the feed runs."""
    database = folder / "app.db"
    make_database(database)
    store = await fresh_store(folder, "hub-sqlite.db")
    sink = StoreSink(store)
    try:
        async with asyncio.TaskGroup() as tg:
            config = parse_sqlite_config({"database": str(database), "table": "items"})
            feed = SqliteFeed(config, trigger=TRIGGER, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=sink.load)
            await feed.start(sink.emit)

            def write() -> None:
                conn = sqlite3.connect(database, isolation_level=None)
                for start_id in range(1, rows + 1, 100):
                    conn.execute("BEGIN IMMEDIATE")  # as any app sharing the file with another writer should
                    conn.executemany("INSERT INTO items VALUES (?, ?, 1)",
                                     [(i, f"item-{i}") for i in range(start_id, min(start_id + 100, rows + 1))])
                    conn.execute("COMMIT")
                conn.close()
            start = time.perf_counter()
            await asyncio.to_thread(write)
            await until(lambda: sink.events >= rows)
            elapsed_s = time.perf_counter() - start
            await feed.stop()
        return rows / elapsed_s, elapsed_s
    finally:
        await store.close()


async def sqlite_latency(folder: Path, count: int) -> list[float]:
    """Commit-to-stored milliseconds of `count` single-row commits, one every 20 ms."""
    database = folder / "latency.db"
    make_database(database)
    store = await fresh_store(folder, "hub-latency.db")
    committed: dict[int, float] = {}
    latencies_ms: list[float] = []

    def stored(event: TriggerEvent) -> None:
        row_id = event.data["key"]["id"]  # type: ignore[index, call-overload]
        latencies_ms.append((time.perf_counter() - committed[row_id]) * 1000)
    sink = StoreSink(store, stored)
    try:
        async with asyncio.TaskGroup() as tg:
            config = parse_sqlite_config({"database": str(database), "table": "items"})
            feed = SqliteFeed(config, trigger=TRIGGER, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=sink.load)
            await feed.start(sink.emit)
            conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)

            def insert(row_id: int) -> None:  # off the event loop: the feed's reads and prunes need it
                committed[row_id] = time.perf_counter()  # just before the commit: the feed may store it at once
                conn.execute("INSERT INTO items VALUES (?, 'x', 1)", (row_id,))
            for i in range(1, count + 1):
                await asyncio.to_thread(insert, i)
                await asyncio.sleep(0.02)
            conn.close()
            await until(lambda: sink.events >= count)
            await feed.stop()
        return latencies_ms
    finally:
        await store.close()


class PgDatabase:
    """A PostgreSQL database made for one run (dropped after, with any slot left in it)."""

    def __init__(self, admin_dsn: str) -> None:
        self._admin_dsn = admin_dsn
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.dsn = admin_dsn.rsplit("/", 1)[0] + f"/{self.name}"

    async def __aenter__(self) -> PgDatabase:
        admin = await asyncpg.connect(self._admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        admin = await asyncpg.connect(self._admin_dsn)
        try:
            await admin.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                "WHERE database = $1", self.name)
            await admin.execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()


def pg_admin_dsn() -> str | None:
    url = service_setting("TRIGGERHUB_TEST_PG_URL")
    return url.replace("postgresql+asyncpg://", "postgresql://", 1) if url else None


def pg_feed(mode: str, dsn: str, table: str, tg: asyncio.TaskGroup, sink: StoreSink) -> CursorFeed:
    if mode == "outbox":
        return PostgresFeed(parse_postgres_config({"dsn": dsn, "table": table}), trigger=TRIGGER, clock=SYSTEM_CLOCK,
                            tasks=tg, load_cursor=sink.load)
    return LogicalFeed(parse_logical_config({"dsn": dsn, "table": table}, TRIGGER), trigger=TRIGGER,
                       clock=SYSTEM_CLOCK, tasks=tg, load_cursor=sink.load, save_cursor=sink.save)


async def postgres_rows(folder: Path, dsn: str, mode: str, rows: int, latency_rows: int) -> tuple[float, list[float]]:
    """(rows/s from the first commit to the last stored event for `rows` inserts in transactions of
    100, commit-to-stored ms of `latency_rows` single-row commits 20 ms apart) for one mode."""
    table = f"items_{mode}"
    # Commits wait for their WAL flush, as with PostgreSQL's default (the test server turns it off).
    conn = await asyncpg.connect(dsn, server_settings={"synchronous_commit": "on"})
    await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL, qty int)")
    store = await fresh_store(folder, f"hub-pg-{mode}.db")
    committed: dict[int, float] = {}
    latencies_ms: list[float] = []

    def stored(event: TriggerEvent) -> None:
        data = event.data
        row_id = (data.get("key") or data.get("row") or {}).get("id")  # type: ignore[union-attr]
        if row_id in committed:
            latencies_ms.append((time.perf_counter() - committed[row_id]) * 1000)
    sink = StoreSink(store, stored)
    try:
        async with asyncio.TaskGroup() as tg:
            feed = pg_feed(mode, dsn, table, tg, sink)
            await feed.start(sink.emit)
            start = time.perf_counter()
            for first in range(1, rows + 1, 100):
                await conn.executemany(f"INSERT INTO {table} VALUES ($1, 'item', 1)",
                                       [(i,) for i in range(first, min(first + 100, rows + 1))])
            await until(lambda: sink.events >= rows)
            rate = rows / (time.perf_counter() - start)
            for row_id in range(rows + 1, rows + latency_rows + 1):
                committed[row_id] = time.perf_counter()  # just before the commit: the feed may store it at once
                await conn.execute(f"INSERT INTO {table} VALUES ($1, 'x', 1)", row_id)
                await asyncio.sleep(0.02)
            await until(lambda: sink.events >= rows + latency_rows)
            await feed.stop()
        return rate, latencies_ms
    finally:
        await conn.close()
        await store.close()


async def database_modes(folder: Path, rows: int, latency_rows: int) -> dict[str, tuple[float, list[float]]]:
    """Each database mode: (rows/s commit -> stored, commit -> stored latencies in ms); PostgreSQL
    modes only when TRIGGERHUB_TEST_PG_URL is configured."""
    out = {"sqlite": ((await sqlite_throughput(folder, rows))[0], await sqlite_latency(folder, latency_rows))}
    admin = pg_admin_dsn()
    if admin is not None:
        async with PgDatabase(admin) as database:
            for mode in PG_MODES:
                out[f"postgres.{mode}"] = await postgres_rows(folder, database.dsn, mode, rows, latency_rows)
    return out


async def kafka_records(folder: Path, bootstrap: str, count: int) -> tuple[float, float, float, int]:
    """(feed records/s from the first send to the last stored record, the producer's records/s in
    the same run, a bare consumer's records/s reading them afterwards, events stored) for `count`
    JSON records over 3 partitions."""
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    store = await fresh_store(folder, "hub-kafka.db")
    delivered = 0

    def stored(event: TriggerEvent) -> None:
        nonlocal delivered
        delivered += len(event.data["messages"])  # type: ignore[index, call-overload, arg-type]
    sink = StoreSink(store, stored)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        async with asyncio.TaskGroup() as tg:
            config = parse_kafka_config({"brokers": [bootstrap], "topics": [topic], "valueEncoding": "json",
                                         "maxBatchRecords": 500, "maxBatchWaitMs": 20},
                                        default_group=f"bench-{topic}")
            feed = KafkaFeed(config, trigger=TRIGGER, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=sink.load,
                             save_cursor=sink.save)
            await feed.start(sink.emit)
            start = time.perf_counter()
            for i in range(count):
                await producer.send(topic, json.dumps({"n": i, "amount": 1.5}).encode(), partition=i % 3)
            await producer.flush()
            produced_s = time.perf_counter() - start
            await until(lambda: delivered >= count)
            feed_rate = count / (time.perf_counter() - start)
            await feed.stop()
    finally:
        await producer.stop()
        await store.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-bare-{topic}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen, start = 0, time.perf_counter()
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=500, max_records=500)).values():
                for record in records:
                    json.loads(record.value or b"null")
                seen += len(records)
        bare_rate = count / (time.perf_counter() - start)
    finally:
        await consumer.stop()
    return feed_rate, count / produced_s, bare_rate, sink.events


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--latency-rows", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        floor = await store_floor(folder, args.rows)
        print(f"store floor (one accept per event, 1 task)  {floor:8.0f} events/s  ({args.rows} events)")
        rate, elapsed_s = await sqlite_throughput(folder, args.rows)
        print(f"sqlite/changes  commit -> stored          {rate:8.0f} rows/s    ({args.rows} rows in "
              f"{elapsed_s:.2f} s; {rate / floor:.2f}x the store floor)")
        latencies = sorted(await sqlite_latency(folder, args.latency_rows))
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"sqlite/changes  commit -> stored latency  p50 {statistics.median(latencies):.1f} ms, "
              f"p99 {p99:.1f} ms  ({len(latencies)} single-row commits, 20 ms apart; poll 50 ms)")
        admin = pg_admin_dsn()
        if admin is None:
            print("postgres/changes skipped: set TRIGGERHUB_TEST_PG_URL (see .cache/services.env)")
        else:
            async with PgDatabase(admin) as database:
                for mode in PG_MODES:
                    rate, waits = await postgres_rows(folder, database.dsn, mode, args.rows, args.latency_rows)
                    waits.sort()
                    print(f"postgres {mode:8s} commit -> stored          {rate:8.0f} rows/s    ({args.rows} rows; "
                          f"{rate / floor:.2f}x the store floor); latency p50 {statistics.median(waits):.1f} ms, "
                          f"p99 {waits[min(len(waits) - 1, int(len(waits) * 0.99))]:.1f} ms")
        bootstrap = service_setting("TRIGGERHUB_TEST_KAFKA")
        if not bootstrap:
            print("kafka/consume   skipped: set TRIGGERHUB_TEST_KAFKA=host:port (see .cache/services.env)")
            return
        feed_rate, produce_rate, bare_rate, events = await kafka_records(folder, bootstrap, args.records)
        print(f"kafka/consume   send -> stored            {feed_rate:8.0f} records/s ({args.records} records, "
              f"3 partitions, {events} events)")
        print(f"                floors in this run: producer {produce_rate:.0f} records/s "
              f"({feed_rate / produce_rate:.2f}x), bare consumer {bare_rate:.0f} records/s "
              f"({feed_rate / bare_rate:.2f}x), store {floor:.0f} events/s ({feed_rate / floor:.1f}x)")


if __name__ == "__main__":
    asyncio.run(main())
