"""Store hot-path throughput and per-call latency (p50, p99): accept, complete, get_entity, get_subject.

    python bench/store_bench.py [--count N] [--tasks T ...] [--synchronous NORMAL|FULL]

Runs on a fresh SQLite file, and on PostgreSQL too when TRIGGERHUB_TEST_PG_URL names a
database (postgresql+asyncpg://...); that database gets fresh tables in a new database
`th_bench_<hex>` created next to it and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import asyncpg

from triggerhub.model import (
    Action, Activation, ActivationResponse, Exec, FullyQualifiedName, Invocation, Parameter, Subject,
    TriggerEvent, new_activation_id,
)
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

ACTION = Action("guest", "hello", Exec("python:3.11", "def main(args):\n    return args\n"),
                annotations=(Parameter("exec", "python"),))
TRIGGER = FullyQualifiedName("guest", "sensor")


def acceptance(activation_id: str, index: int) -> Acceptance:
    event = TriggerEvent(f"evt-{activation_id}", "mqtt://sensors", "triggerhub.mqtt", TRIGGER,
                         {"temperature": 21.5, "room": "lab"}, time_ms=1_700_000_000_000 + index)
    invocation = Invocation(activation_id, ACTION, {"temperature": 21.5}, "guest", "guest",
                            accepted_ms=1_700_000_000_000 + index, path_annotation="guest/hello")
    return Acceptance(event, [invocation], cursor=("mqtt:sensors", str(index)))


def finished(activation_id: str, index: int) -> Activation:
    return Activation("guest", "hello", "guest", activation_id, 1_700_000_000_000 + index,
                      1_700_000_000_005 + index, ActivationResponse.ok({"temperature": 21.5}),
                      logs=("2024-01-01T00:00:00.000Z       stdout: hi",),
                      annotations=(Parameter("path", "guest/hello"), Parameter("kind", "python:3.11")))


async def timed(label: str, calls: Sequence[Callable[[], Awaitable[object]]], tasks: int) -> None:
    queue = list(reversed(calls))
    latencies_ms: list[float] = []

    async def worker() -> None:
        while queue:
            call = queue.pop()
            start = time.perf_counter()
            await call()
            latencies_ms.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(tasks):
            group.create_task(worker())
    elapsed_s = time.perf_counter() - started
    latencies_ms.sort()
    p50_ms, p99_ms = (latencies_ms[min(len(latencies_ms) - 1, int(q * len(latencies_ms)))] for q in (0.5, 0.99))
    print(f"  {label:<14} {len(calls) / elapsed_s:9.0f}/s  p50={p50_ms:.3f} ms p99={p99_ms:.3f} ms  "
          f"({len(calls)} calls, {tasks} tasks, {elapsed_s:.2f} s)")


async def bench(url: str, count: int, tasks: int, synchronous: str = "NORMAL") -> None:
    store = SqlStore(url, sqlite_synchronous=synchronous)
    await store.open()
    try:
        ids = [new_activation_id() for _ in range(count)]
        await timed("accept", [partial(store.accept, acceptance(a, i)) for i, a in enumerate(ids)], tasks)
        await timed("complete", [partial(store.complete, finished(a, i)) for i, a in enumerate(ids)], tasks)
        await store.put_subject(Subject("guest", "guest", "uuid-guest", "hash"))
        await store.put_entities([ACTION])
        await timed("get_entity", [lambda: store.get_entity("guest", "hello")] * count, tasks)
        await timed("get_subject", [lambda: store.get_subject("uuid-guest")] * count, tasks)
    finally:
        await store.close()


async def with_pg_database(admin_url: str, run: Callable[[str], Awaitable[None]]) -> None:
    base, _, _ = admin_url.rpartition("/")
    name = f"th_bench_{secrets.token_hex(4)}"
    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            await run(f"{base}/{name}")
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--synchronous", default="NORMAL", help="SQLite only: NORMAL (default) or FULL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for tasks in args.tasks:
            path = Path(tmp) / f"bench-{tasks}.db"
            print(f"SQLite {path} (synchronous={args.synchronous}), {tasks} task(s)")
            await bench(f"sqlite+aiosqlite:///{path}", args.count, tasks, args.synchronous)
    pg_url = os.environ.get("TRIGGERHUB_TEST_PG_URL")
    if pg_url:
        for tasks in args.tasks:
            print(f"PostgreSQL, {tasks} task(s)")
            await with_pg_database(pg_url, partial(bench, count=args.count, tasks=tasks))


if __name__ == "__main__":
    asyncio.run(main())
