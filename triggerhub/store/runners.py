"""How one Store operation (a function of a sync Connection) reaches the database, as one transaction.

PostgreSQL: a pooled asyncpg connection, the operation run through `run_sync`. SQLite: writes in
one writer thread that commits every write queued meanwhile as one transaction (group commit off
the event loop), reads by key inline in the loop thread, listings in a thread. See SqliteRunner.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
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
CHECKPOINT_EVERY_WRITES = 200  # commits (each of one or many writes) between two checkpoints
WAL_LIMIT_BYTES = 4 * 1024 * 1024  # the -wal file is truncated before the batch after it passes this
CHECKPOINT_WAIT_MS = 1_000  # how long a checkpoint waits for readers of old snapshots
MAX_WRITES_PER_TRANSACTION = 64  # operations (each may be a batch of up to 256 requests)
INLINE_SYNCHRONOUS = frozenset({"OFF", "NORMAL"})  # commits without fsync: cheap enough for the loop thread


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
    """SQLite through the stdlib sqlite3 driver: one writer thread, reads inline in the loop thread.

    Writes go to one thread that owns the write connection. It takes every write queued since its
    last commit (the accept and complete batches of many concurrent requests, cursors, entities)
    and commits them as one transaction, then wakes the loop once for the whole batch: a caller's
    future is resolved only after the COMMIT returned, so "stored before 202 / PUBACK" holds, and
    durability costs one commit (with `synchronous=FULL`, one fsync) per batch, not per request.
    SQLite's own work (sqlite3_step, the WAL write, any fsync) runs without the GIL, so the loop
    keeps serving while a batch commits or waits for another process's write lock (busy_timeout).
    When a combined transaction fails, it is rolled back and each write runs again alone, so one
    bad write cannot fail its neighbours (operations only touch the connection, so they may rerun).

    Reads by key run inline on a second connection in the loop thread: a primary-key read costs
    tens of microseconds, less than any thread hop. WAL readers never wait for the writer, and a
    read started after a write's future resolved sees that write (read-your-writes). Listings and
    counts, unbounded in size, run in a thread on a pooled connection; so does an inline read
    that meets SQLITE_BUSY (its connection has busy_timeout 0, so the loop never waits on a lock).

    The loop thread hands over the writes submitted in one loop turn together (one wake-up of
    the writer per turn, not per write). When the writer thread is idle (nothing handed to it is
    unanswered), no checkpoint is due and `synchronous` is not FULL/EXTRA (no fsync on the loop),
    the loop thread commits that turn's writes itself on the write connection, as one transaction
    with busy_timeout 0: a lone write then costs one COMMIT (tens of microseconds without fsync)
    instead of two thread hops, which on a loaded machine each wait for a CPU. If another process
    holds the write lock, nothing was written and the writes go to the thread as before. Under
    load the thread is busy, so writes queue for it and share its group commits.

    The WAL stays bounded: before a batch, when the -wal file has passed WAL_LIMIT_BYTES or
    CHECKPOINT_EVERY_WRITES transactions were committed since the last checkpoint, the writer runs
    `wal_checkpoint(TRUNCATE)`, which copies the WAL into the database and truncates it to zero
    bytes; it waits at most CHECKPOINT_WAIT_MS for readers of old snapshots, else it retries
    before the next batch. So the file stays under WAL_LIMIT_BYTES plus one batch, unless a reader
    holds one snapshot for longer than that wait (readers here hold one for one statement).
    """

    def __init__(self, engine: Engine, inline: Connection, writer: _Writer) -> None:
        self._engine = engine
        self._inline: Connection | None = inline
        self._writer = writer

    @classmethod
    async def open(cls, url: URL, synchronous: str) -> SqliteRunner:
        # AUTOCOMMIT leaves transaction control to `_transaction` (sqlite3 isolation_level=None).
        engine = create_engine(url.set(drivername="sqlite+pysqlite"), isolation_level="AUTOCOMMIT",
                               skip_autocommit_rollback=True,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        event.listen(engine, "connect", partial(configure_sqlite, synchronous=synchronous))
        wal_path = Path(f"{url.database}-wal")
        inline: Connection | None = None
        try:
            inline = await asyncio.to_thread(_inline_connection, engine)
            write_connection = await asyncio.to_thread(_write_connection, engine)
        except BaseException:
            if inline is not None:
                inline.close()
            engine.dispose()
            raise
        writer = _Writer(write_connection, wal_path, asyncio.get_running_loop(),
                         inline=synchronous.upper() in INLINE_SYNCHRONOUS)
        return cls(engine, inline, writer)

    def statistics(self) -> WriterStatistics:
        return self._writer.statistics()

    async def write(self, operation: Operation[T]) -> T:
        return await self._writer.submit(operation)

    async def read(self, operation: Operation[T], *, listing: bool = False) -> T:
        if listing:
            return await asyncio.to_thread(self._pooled, operation)
        if self._inline is None:
            raise StoreError("the store is closed; nothing was read")
        try:
            return operation(self._inline)
        except (DBAPIError, sqlite3.OperationalError) as exc:
            if not _is_lock_timeout(exc):
                raise
        return await asyncio.to_thread(self._pooled, operation)

    async def close(self) -> None:
        inline, self._inline = self._inline, None
        await self._writer.close()
        if inline is not None:
            await asyncio.to_thread(inline.close)  # the last connection to close checkpoints
        await asyncio.to_thread(self._engine.dispose)

    def _pooled(self, operation: Operation[T]) -> T:
        with self._engine.connect() as conn:
            return operation(conn)


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    transactions: int  # commits, including the lone reruns after a combined one failed
    writes: int  # write operations committed or failed
    checkpoints: int  # wal_checkpoint(TRUNCATE) runs that reset the WAL
    inline_transactions: int  # of `transactions`, those the loop thread committed (the writer was idle)


@dataclass(slots=True)
class _Job:
    operation: Operation[Any]
    answer: asyncio.Future[Any]


class _Writer:
    """The thread that owns the write connection and commits every queued write as one batch."""

    def __init__(self, connection: Connection, wal_path: Path, loop: asyncio.AbstractEventLoop, *,
                 inline: bool) -> None:
        self._connection = connection
        self._wal_path = wal_path
        self._loop = loop
        self._inline = inline
        # Held by whichever thread uses the write connection (the writer, or the loop committing inline).
        self._using = threading.Lock()
        self._unanswered = 0  # jobs handed to the thread and not yet answered; only the loop thread counts
        # The loop thread hands jobs over once per loop turn (one wake-up of this thread for all
        # the writes submitted in that turn); None asks the thread to stop.
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._submitted: list[_Job] = []
        self._closed = False
        self._commits_since_checkpoint = 0
        self._transactions = self._writes = self._checkpoints = self._inline_transactions = 0
        self._thread = threading.Thread(target=self._serve, name="triggerhub-sqlite-writer", daemon=True)
        self._thread.start()

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(self._transactions, self._writes, self._checkpoints, self._inline_transactions)

    async def submit(self, operation: Operation[T]) -> T:
        if self._closed:
            raise StoreError("the store was closed; nothing was written")
        job = _Job(operation, self._loop.create_future())
        if not self._submitted:
            self._loop.call_soon(self._hand_over)
        self._submitted.append(job)
        result: T = await job.answer
        return result

    def _hand_over(self) -> None:
        submitted, self._submitted = self._submitted, []
        if self._inline and not self._unanswered and not self._closed:
            try:
                submitted = self._commit_inline(submitted)
            except Exception as exc:  # as in the thread: a defect outside any operation; each caller hears it
                log.exception("SQLite inline commit failed outside a transaction")
                _settle([(job, None, StoreError(f"the SQLite writer failed: {exc}; the write may or may not have "
                                                "been committed; retry it")) for job in submitted])
                return
            if not submitted:
                return
        self._unanswered += len(submitted)
        self._jobs.put(submitted)

    def _commit_inline(self, jobs: list[_Job]) -> list[_Job]:
        """In the loop thread: commit `jobs` now if the write lock is free at once; returns the
        jobs left for the thread (all of them when it is busy, a checkpoint is due, or another
        process holds the lock: none of those was written)."""
        live = [job for job in jobs if not job.answer.cancelled()]
        if not live or not self._using.acquire(blocking=False):
            return live
        try:
            if self._checkpoint_due()[0]:
                return live
            raw = _dbapi(self._connection)
            raw.execute("PRAGMA busy_timeout=0")
            try:
                try:
                    raw.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                        return live
                    raise
                self._inline_transactions += 1
                outcomes = self._commit(live, begun=True)
            finally:
                raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            self._using.release()
        # A lone rerun that met another process's lock wrote nothing: the thread waits for it.
        left = [job for job, _, error in outcomes if isinstance(error, Exception) and _is_lock_timeout(error)]
        self._writes -= len(left)
        _settle([outcome for outcome in outcomes if outcome[0] not in left])
        return left

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._submitted:
            self._hand_over()
        self._jobs.put(None)  # after every queued write: those are still committed
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._connection.close)

    # in the writer thread ----------------------------------------------------------------------

    def _serve(self) -> None:
        waiting: list[_Job] = []
        stopping = False
        while waiting or not stopping:
            if not waiting:
                handed = self._jobs.get()
                if handed is None:
                    stopping = True
                    continue
                waiting = handed
            while len(waiting) < MAX_WRITES_PER_TRANSACTION and not stopping:
                try:
                    handed = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if handed is None:
                    stopping = True  # after what was handed over before it
                else:
                    waiting.extend(handed)
            batch, waiting = waiting[:MAX_WRITES_PER_TRANSACTION], waiting[MAX_WRITES_PER_TRANSACTION:]
            live = [j for j in batch if not j.answer.cancelled()]  # a racy read: see _settle
            if not live:
                self._settle_soon([], handled=len(batch))
                continue
            try:
                with self._using:
                    self._checkpoint_if_due()
                    outcomes = self._commit(live)
            except Exception as exc:  # a defect outside any operation: each caller hears it
                log.exception("SQLite writer failed outside a transaction")
                outcomes = [(j, None, StoreError(f"the SQLite writer failed: {exc}; the write may or may not "
                                                 "have been committed; retry it")) for j in live]
            self._settle_soon(outcomes, handled=len(batch))

    def _commit(self, batch: list[_Job], *, begun: bool = False) -> list[tuple[_Job, Any, BaseException | None]]:
        """With the write connection held; `begun`: BEGIN IMMEDIATE was already run for the batch."""
        self._writes += len(batch)
        self._commits_since_checkpoint += 1
        try:
            self._transactions += 1
            results = _transaction(self._connection, lambda conn: [j.operation(conn) for j in batch], write=True,
                                   begun=begun)
            return [(job, result, None) for job, result in zip(batch, results, strict=True)]
        except Exception as exc:
            if len(batch) == 1 or _is_lock_timeout(exc):  # alone, each would wait out busy_timeout again
                return [(job, None, exc) for job in batch]
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        for job in batch:  # each alone, so one bad write fails only its own caller
            try:
                self._transactions += 1
                outcomes.append((job, _transaction(self._connection, job.operation, write=True), None))
            except Exception as exc:
                outcomes.append((job, None, exc))
        return outcomes

    def _settle_soon(self, outcomes: list[tuple[_Job, Any, BaseException | None]], *, handled: int) -> None:
        try:
            self._loop.call_soon_threadsafe(self._settle_handed, outcomes, handled)
        except RuntimeError:  # the loop is closed: no one is left waiting for these answers
            log.warning("SQLite writer: the event loop closed before %d committed writes were answered",
                        len(outcomes))

    def _settle_handed(self, outcomes: list[tuple[_Job, Any, BaseException | None]], handled: int) -> None:
        """In the loop thread: answer what the thread committed; `handled` jobs are off its hands."""
        self._unanswered -= handled
        _settle(outcomes)

    def _checkpoint_due(self) -> tuple[bool, int]:
        """(due, the -wal file's size in bytes)."""
        try:
            wal_bytes = self._wal_path.stat().st_size
        except FileNotFoundError:
            wal_bytes = 0
        return wal_bytes >= WAL_LIMIT_BYTES or self._commits_since_checkpoint >= CHECKPOINT_EVERY_WRITES, wal_bytes

    def _checkpoint_if_due(self) -> None:
        due, wal_bytes = self._checkpoint_due()
        if not due:
            return
        conn = self._connection
        try:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            try:
                busy, wal_pages, copied_pages = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            finally:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        except DBAPIError as exc:
            log.warning("SQLite checkpoint failed; the writer retries before its next batch: %s", exc.orig)
            return
        if busy:
            log.warning("SQLite checkpoint: readers held old snapshots for %d ms (%s of %s WAL pages copied); "
                        "retrying before the next batch", CHECKPOINT_WAIT_MS, copied_pages, wal_pages)
            return
        self._commits_since_checkpoint = 0
        self._checkpoints += 1
        log.debug("SQLite checkpoint: %s WAL pages copied, WAL truncated from %d bytes", copied_pages, wal_bytes)


def _settle(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """In the loop thread. A caller cancelled after the writer took its job finds its answer
    cancelled; the write may then be committed all the same, like any write cut off in flight."""
    for job, result, error in outcomes:
        if job.answer.done():
            continue
        if error is None:
            job.answer.set_result(result)
        else:
            job.answer.set_exception(error)


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
    """The loop thread's read connection: never waits for a lock (busy reads take a thread)."""
    connection = engine.connect()
    connection.detach()  # closed, not pooled, at the end: its settings stay its own
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
    return connection


def _write_connection(engine: Engine) -> Connection:
    """The writer thread's connection: waits for other processes' locks; checkpoints only when told."""
    connection = engine.connect()
    connection.detach()
    connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
    return connection


def _transaction(conn: Connection, operation: Operation[T], *, write: bool, begun: bool = False) -> T:
    """A read runs as it is (each of its statements sees a committed state); a write first takes
    the write lock, so it never has to upgrade a read lock another writer could have made stale
    (`begun`: the caller already took it)."""
    if not write:
        return operation(conn)
    if not begun:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        result = operation(conn)
        conn.exec_driver_sql("COMMIT")
    except BaseException:
        if conn.connection.dbapi_connection is not None and conn.connection.dbapi_connection.in_transaction:
            conn.exec_driver_sql("ROLLBACK")
        raise
    return result


def _dbapi(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.dbapi_connection
    if not isinstance(raw, sqlite3.Connection):
        raise StoreError("the SQLite write connection is closed; nothing was written")
    return raw


def _is_lock_timeout(exc: Exception) -> bool:
    if isinstance(exc, DBAPIError):
        return _is_busy(exc)
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _is_busy(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, sqlite3.OperationalError) and exc.orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
