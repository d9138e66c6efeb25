"""Database change feeds in `python -m bench` (scenario feeds.databases), one row per mode.

Rate: rows/s from commit to stored event, the feed emitting into a real SQLite hub store
(bench/feed_sources.py), beside the store floor: that store accepting events one at a time with
no feed, measured again right after. Latency: commit to the activation's start through
`triggerhub up` (feed -> trigger -> rule -> a warm Python action), single-row commits 20 ms
apart; the action returns the row's id and the record's `start` is compared with the commit's
wall-clock time. PostgreSQL rows need TRIGGERHUB_TEST_PG_URL (environment or .cache/services.env)
and are left out with a line without it; their sessions commit with synchronous_commit on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench import feed_sources, systems
from bench.context import Context, latency_stats
from bench.measure import Row

STAMP_PY = "def main(args):\n    return {'id': (args.get('key') or args.get('row') or {}).get('id')}\n"
FEED = "/whisk.system/{package}/changes"


def rows_for(ctx: Context) -> tuple[int, int]:
    """(rows for the rate, single-row commits for the latency)."""
    return (300, 30) if ctx.sizes.mqtt_burst < 1000 else (2000, 100)


def measure_floor_store(ctx: Context) -> Row:
    rows, _ = rows_for(ctx)
    with tempfile.TemporaryDirectory(dir=ctx.scratch) as folder:
        rate = asyncio.run(feed_sources.store_floor(Path(folder), rows))
    return Row("floor.store", "floor", "the hub's SQLite store accepting events one at a time (event + cursor, "
               "one transaction each), no feed", rate_per_s=round(rate, 1), rate_samples=rows)


def feed_databases(ctx: Context) -> None:
    rows, latency_rows = rows_for(ctx)
    admin = feed_sources.pg_admin_dsn()
    with tempfile.TemporaryDirectory(dir=ctx.scratch) as folder:
        rates = {"sqlite": asyncio.run(feed_sources.sqlite_throughput(Path(folder), rows))[0]}
        if admin is None:
            print("  feeds.databases: PostgreSQL modes skipped: set TRIGGERHUB_TEST_PG_URL", flush=True)
        else:
            rates.update(asyncio.run(_postgres_rates(Path(folder), admin, rows)))
    hub = ctx.hub()
    hub.must("PUT", "actions/dbstamp", {"exec": {"kind": "python:default", "code": STAMP_PY}})
    hub.must("POST", "actions/dbstamp?blocking=true", {})  # a warm runtime
    for mode, rate in rates.items():
        waits = (_sqlite_to_activation(ctx, hub, latency_rows) if mode == "sqlite"
                 else asyncio.run(_postgres_to_activation(hub, admin or "", mode.split(".")[1], latency_rows)))
        ctx.add(Row(f"feeds.{mode}", "triggerhub", "rate: commit -> stored event (feed into the hub store); "
                    "p50/p99: commit -> activation start through triggerhub up", *latency_stats(waits),
                    rate_per_s=round(rate, 1), rate_samples=rows, floor="floor.store"))


async def _postgres_rates(folder: Path, admin: str, rows: int) -> dict[str, float]:
    out = {}
    async with feed_sources.PgDatabase(admin) as database:
        for mode in feed_sources.PG_MODES:
            out[f"postgres.{mode}"], _ = await feed_sources.postgres_rows(folder, database.dsn, mode, rows, 1)
    return out


def _trigger(hub: systems.Hub, package: str, params: dict[str, object]) -> str:
    name = f"db{uuid.uuid4().hex[:8]}"
    hub.must("PUT", f"triggers/{name}", {"annotations": [{"key": "feed", "value": FEED.format(package=package)}]})
    hub.must("POST", f"/api/v1/namespaces/whisk.system/actions/{package}/changes?blocking=true",
             {"lifecycleEvent": "CREATE", "triggerName": f"/_/{name}", "authKey": "", **params})
    hub.must("PUT", f"rules/on-{name}", {"trigger": name, "action": "dbstamp"})
    return name


def _remove(hub: systems.Hub, package: str, name: str) -> None:
    hub.must("POST", f"/api/v1/namespaces/whisk.system/actions/{package}/changes?blocking=true",
             {"lifecycleEvent": "DELETE", "triggerName": f"/_/{name}", "authKey": ""})
    hub.call("DELETE", f"rules/on-{name}")
    hub.call("DELETE", f"triggers/{name}")


def _waits(hub: systems.Hub, committed_ms: dict[int, float]) -> list[float]:
    """Activation start minus commit time, per row id, once every row's record is stored."""
    deadline = time.monotonic() + 60
    found: dict[int, float] = {}
    while len(found) < len(committed_ms) and time.monotonic() < deadline:
        page = hub.must("GET", "activations?name=dbstamp&docs=true&limit=200")
        assert isinstance(page, list)
        for record in page:
            row_id = (record.get("response") or {}).get("result", {}).get("id")
            if row_id in committed_ms:
                found[row_id] = record["start"] - committed_ms[row_id]
        time.sleep(0.1)
    if len(found) < len(committed_ms):
        raise SystemExit(f"dbstamp: {len(found)} of {len(committed_ms)} activations stored after 60 s")
    return list(found.values())


def _sqlite_to_activation(ctx: Context, hub: systems.Hub, count: int) -> list[float]:
    database = ctx.scratch / f"latency-{uuid.uuid4().hex[:6]}.db"
    feed_sources.make_database(database)
    name = _trigger(hub, "sqlite", {"database": str(database), "table": "items"})
    committed_ms: dict[int, float] = {}
    conn = sqlite3.connect(database, isolation_level=None)
    base = int(time.time())  # ids unique across modes: records of earlier modes are still listed
    for i in range(count):
        conn.execute("INSERT INTO items VALUES (?, 'x', 1)", (base + i,))
        committed_ms[base + i] = time.time() * 1000
        time.sleep(0.02)
    conn.close()
    try:
        return _waits(hub, committed_ms)
    finally:
        _remove(hub, "sqlite", name)


async def _postgres_to_activation(hub: systems.Hub, admin: str, mode: str, count: int) -> list[float]:
    async with feed_sources.PgDatabase(admin) as database:
        conn = await asyncpg.connect(database.dsn, server_settings={"synchronous_commit": "on"})
        await conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int)")
        name = await asyncio.to_thread(_trigger, hub, "postgres", {"dsn": database.dsn, "table": "items", "mode": mode})
        committed_ms: dict[int, float] = {}
        base = int(time.time() * 1000)
        try:
            for i in range(count):
                await conn.execute("INSERT INTO items VALUES ($1, 'x', 1)", base + i)
                committed_ms[base + i] = time.time() * 1000
                await asyncio.sleep(0.02)
            return await asyncio.to_thread(_waits, hub, committed_ms)
        finally:
            await conn.close()
            await asyncio.to_thread(_remove, hub, "postgres", name)
