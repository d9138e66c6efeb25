"""How one Store operation (a function of a sync Connection) reaches the database, as one transaction.

PostgreSQL: a pooled asyncpg connection, the operation run through `run_sync`. SQLite: inline on
one sqlite3 connection in the event-loop thread, chosen over one `asyncio.to_thread` hop per
operation because the hop costs more than the work (complete() p50 0.55 vs 0.8-0.9 ms); a thread
only waits for another writer's lock, checkpoints, or runs a listing. Measurements in SqliteRunner.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from triggerhub.errors import StoreError

T = TypeVar("T")
Operation = Callable[[Connection], T]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY_WRITES = 200  # ~1,000-2,000 WAL pages of accepts and completes


class Runner(Protocol):
    async def write(self, operation: Operation[T]) -> T:
        """Run `operation` in one write transaction: committed when it returns, rolled back when it raises."""

    async def read(self, operation: Operation[T], *, listing: bool = False) -> T:
        """Run a read; `listing` marks one whose size the caller does not bound (lists, counts)."""

    async def close(self) -> None: ...


class AsyncRunner:
    """PostgreSQL through asyncpg: concurrent transactions; keys and conflict clauses settle races."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, operation: Operation[T]) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(operation)

    async def read(self, operation: Operation[T], *, listing: bool = False) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(operation)

    async def close(self) -> None:
        await self._engine.dispose()


class SqliteRunner:
    """SQLite through the stdlib sqlite3 driver; each operation is one synchronous transaction.

    Chosen: inline in the event-loop thread, over one `asyncio.to_thread` hop per operation: with
    WAL and synchronous=NORMAL a commit does not fsync, so the work is a few hundred microseconds
    of SQL and SQLAlchemy, less than a hop costs under load. bench/store_bench.py --count 2000,
    p50, same machine and load, inline vs one hop: complete 0.55 vs 0.80-0.94 ms, get_entity
    0.15-0.17 vs 0.41-0.42 ms; 32 tasks: 7,700-8,000 vs 3,900-4,600 completes/s. Inline operations
    of one process never overlap, so they need no lock; each first gives the loop one turn, so
    writers arriving meanwhile share the next group commit. The loop never waits on another
    connection or the disk:
    - the inline connection has busy_timeout 0 and a write takes the lock first (BEGIN IMMEDIATE);
      when another process (or this one's thread) holds it, the operation runs again in a thread on
      a pooled connection that waits up to busy_timeout;
    - listings and counts, unbounded in size, always take that hop;
    - the inline connection does not checkpoint (a checkpoint copies the WAL back and fsyncs:
      milliseconds); every CHECKPOINT_EVERY_WRITES writes, one write first checkpoints in a thread.
    """

    def __init__(self, engine: Engine, inline: Connection) -> None:
        self._engine = engine
        self._inline: Connection | None = inline
        self._writes_since_checkpoint = 0

    @classmethod
    async def open(cls, url: URL, synchronous: str) -> SqliteRunner:
        # AUTOCOMMIT leaves transaction control to `_transaction` (sqlite3 isolation_level=None).
        engine = create_engine(url.set(drivername="sqlite+pysqlite"), isolation_level="AUTOCOMMIT",
                               skip_autocommit_rollback=True,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        event.listen(engine, "connect", partial(configure_sqlite, synchronous=synchronous))
        try:
            inline = await asyncio.to_thread(_inline_connection, engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, inline)

    async def write(self, operation: Operation[T]) -> T:
        self._writes_since_checkpoint += 1
        if self._writes_since_checkpoint >= CHECKPOINT_EVERY_WRITES:
            self._writes_since_checkpoint = 0
            await asyncio.to_thread(self._checkpoint)
        return await self._run(operation, write=True)

    async def read(self, operation: Operation[T], *, listing: bool = False) -> T:
        if listing:
            return await asyncio.to_thread(self._pooled, operation, False)
        return await self._run(operation, write=False)

    async def close(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            await asyncio.to_thread(inline.close)  # the last connection to close checkpoints
        await asyncio.to_thread(self._engine.dispose)

    async def _run(self, operation: Operation[T], *, write: bool) -> T:
        await asyncio.sleep(0)  # one turn for the loop first; writers arriving meanwhile share a group commit
        if self._inline is None:
            raise StoreError("the store was closed while this operation waited; nothing was written")
        try:
            return _transaction(self._inline, operation, write)
        except DBAPIError as exc:
            if not _is_busy(exc):
                raise
        return await asyncio.to_thread(self._pooled, operation, write)

    def _pooled(self, operation: Operation[T], write: bool) -> T:
        with self._engine.connect() as conn:
            return _transaction(conn, operation, write)

    def _checkpoint(self) -> None:
        """PASSIVE: copies what no reader still needs, waits for no one; a failure only delays it."""
        try:
            with self._engine.connect() as conn:
                busy, wal_pages, copied_pages = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        except DBAPIError as exc:
            log.warning("SQLite checkpoint failed, the WAL keeps growing until the next one: %s", exc.orig)
            return
        log.debug("SQLite checkpoint: %s of %s WAL pages copied (busy=%s)", copied_pages, wal_pages, busy)


def configure_sqlite(dbapi_connection: Any, _record: Any, *, synchronous: str) -> None:
    """Every SQLite connection: WAL (readers never wait for the writer), busy_timeout, `synchronous`."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
    finally:
        cursor.close()


def _inline_connection(engine: Engine) -> Connection:
    connection = engine.connect()
    connection.detach()  # closed, not pooled, at the end: its settings stay its own
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
    return connection


def _transaction(conn: Connection, operation: Operation[T], write: bool) -> T:
    """A read runs as it is (each of its statements sees a committed state); a write first takes
    the write lock, so it never has to upgrade a read lock another writer could have made stale."""
    if not write:
        return operation(conn)
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        result = operation(conn)
        conn.exec_driver_sql("COMMIT")
    except BaseException:
        if conn.connection.dbapi_connection is not None and conn.connection.dbapi_connection.in_transaction:
            conn.exec_driver_sql("ROLLBACK")
        raise
    return result


def _is_busy(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, sqlite3.OperationalError) and exc.orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
