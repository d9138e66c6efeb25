"""How one Store operation (a function of a sync Connection) reaches the database, as one transaction.

PostgreSQL: a pooled asyncpg connection, the operation run through `run_sync`. SQLite: writes in
one writer thread that commits every write queued meanwhile as one transaction (group commit off
the event loop), except a write made while that thread is idle, which the loop thread commits at
once; reads by key inline in the loop thread, listings in a thread. See SqliteRunner.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
CHECKPOINT_EVERY_WRITES = 200  # commits (each of one or many writes) between two background checkpoints
WAL_LIMIT_BYTES = 16 * 1024 * 1024  # the -wal file is truncated before the batch after it passes this
CHECKPOINT_WAIT_MS = 1_000  # how long a checkpoint waits for readers of old snapshots
MAX_WRITES_PER_TRANSACTION = 64  # operations (each may be a batch of up to 256 requests)
INLINE_SYNCHRONOUS = frozenset({"OFF", "NORMAL"})  # a COMMIT without fsync: cheap enough for the loop thread


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
    the writer per turn, not per write).

    A write made while the writer thread is idle (no write handed to it is unanswered) commits
    in the loop thread instead, on the inline connection, when `synchronous` makes a COMMIT
    fsync-free (NORMAL, OFF) and the WAL is under its bound: a lone write then costs its own
    statements and a COMMIT (tens of microseconds) and no thread hop, where the hand-off cost two
    wake-ups (the writer's, then the loop's) and an extra loop turn, most of a warm blocking
    invoke's time beyond its /run. The inline connection's busy_timeout is 0: when any other
    connection (another process, the writer thread) holds the write lock, BEGIN IMMEDIATE fails
    at once, nothing was written, and the write goes to the writer thread as above. So the loop
    never waits on a lock or a disk sync, a write is answered only after its COMMIT as before,
    and while the writer thread has work, later writes queue behind it (writes stay in order).

    Checkpoints stay off the write path: every CHECKPOINT_EVERY_WRITES commits the writer asks a
    second thread (`_Checkpointer`, its own connection) for a `wal_checkpoint(PASSIVE)`, which
    copies the WAL into the database and syncs it without taking the write lock, so writes keep
    committing meanwhile. A checkpoint costs a few fsyncs (5-40 ms on a loaded machine): run by
    the writer every 200 commits, it held up every write queued behind it, which is what put a
    warm invoke's p99 at several times its p50.

    The WAL stays bounded: a passive checkpoint lets SQLite restart the WAL from its start when
    no write came in while it ran; under steady writes one always does, so before a batch, when
    the -wal file has passed WAL_LIMIT_BYTES, the writer itself runs `wal_checkpoint(TRUNCATE)`,
    which copies what the background checkpoints have not (little) and truncates the file to zero
    bytes; it waits at most CHECKPOINT_WAIT_MS for readers of old snapshots (and for a background
    checkpoint), else it retries before the next batch. So the file stays under WAL_LIMIT_BYTES
    plus one batch, unless a reader holds one snapshot for longer than that wait (readers here
    hold one for one statement).
    """

    def __init__(self, engine: Engine, inline: Connection, writer: _Writer, *, inline_writes: bool) -> None:
        self._engine = engine
        self._inline: Connection | None = inline
        self._writer = writer
        self._inline_writes = inline_writes

    @classmethod
    async def open(cls, url: URL, synchronous: str) -> SqliteRunner:
        # AUTOCOMMIT leaves transaction control to `_transaction` (sqlite3 isolation_level=None).
        engine = create_engine(url.set(drivername="sqlite+pysqlite"), isolation_level="AUTOCOMMIT",
                               skip_autocommit_rollback=True,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        event.listen(engine, "connect", partial(configure_sqlite, synchronous=synchronous))
        wal_path = Path(f"{url.database}-wal")
        opened: list[Connection] = []
        try:
            for _ in range(3):  # the loop thread's reads, the writer's, the checkpointer's
                opened.append(await asyncio.to_thread(_own_connection, engine))
        except BaseException:
            for connection in opened:
                connection.close()
            engine.dispose()
            raise
        inline, write_connection, checkpoint_connection = opened
        inline.exec_driver_sql("PRAGMA busy_timeout=0")  # the loop never waits on a lock
        writer = _Writer(write_connection, wal_path, asyncio.get_running_loop(),
                         _Checkpointer(checkpoint_connection))
        return cls(engine, inline, writer, inline_writes=synchronous.upper() in INLINE_SYNCHRONOUS)

    def statistics(self) -> WriterStatistics:
        return self._writer.statistics()

    async def write(self, operation: Operation[T]) -> T:
        if self._inline_writes and self._inline is not None and self._writer.idle:
            try:
                return self._writer.commit_inline(self._inline, operation)
            except _NotWritten:
                pass  # another connection holds the write lock, or the WAL is due for truncation
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
    checkpoints: int  # wal_checkpoint(TRUNCATE) runs that reset the WAL (the writer waited for them)
    background_checkpoints: int  # wal_checkpoint(PASSIVE) runs of the checkpointer thread (writes did not wait)
    inline_transactions: int  # of `transactions`, those the loop thread committed while the writer was idle


class _NotWritten(Exception):
    """An inline write found the write lock taken, or the WAL due for truncation: nothing was written."""


@dataclass(slots=True)
class _Job:
    operation: Operation[Any]
    answer: asyncio.Future[Any]


class _Writer:
    """The thread that owns the write connection and commits every queued write as one batch."""

    def __init__(self, connection: Connection, wal_path: Path, loop: asyncio.AbstractEventLoop,
                 checkpointer: _Checkpointer) -> None:
        self._connection = connection
        self._checkpointer = checkpointer
        self._wal_path = wal_path
        self._loop = loop
        # The loop thread hands jobs over once per loop turn (one wake-up of this thread for all
        # the writes submitted in that turn); None asks the thread to stop.
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._submitted: list[_Job] = []
        self._unanswered = 0  # jobs submitted and not yet answered; only the loop thread counts them
        self._closed = False
        self._commits_since_checkpoint = 0
        self._inline_commits_since_checkpoint = 0  # only the loop thread counts these
        self._transactions = self._writes = self._checkpoints = self._inline_transactions = 0
        self._thread = threading.Thread(target=self._serve, name="triggerhub-sqlite-writer", daemon=True)
        self._thread.start()

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(self._transactions, self._writes, self._checkpoints, self._checkpointer.runs,
                                self._inline_transactions)

    @property
    def idle(self) -> bool:
        """No write submitted to the thread is unanswered (a cancelled caller's write counts as
        answered: should the thread still be committing it, it holds the write lock, which an
        inline write then finds taken)."""
        return not self._unanswered and not self._closed

    async def submit(self, operation: Operation[T]) -> T:
        if self._closed:
            raise StoreError("the store was closed; nothing was written")
        job = _Job(operation, self._loop.create_future())
        if not self._submitted:
            self._loop.call_soon(self._hand_over)
        self._submitted.append(job)
        self._unanswered += 1
        try:
            result: T = await job.answer
        finally:
            self._unanswered -= 1
        return result

    def commit_inline(self, connection: Connection, operation: Operation[T]) -> T:
        """In the loop thread, while `idle`: run `operation` in its own transaction on `connection`
        (busy_timeout 0) and commit it. Raises _NotWritten, having written nothing, when the write
        lock is taken or the WAL has passed its bound (the thread truncates it before its next
        batch); raises what the operation raised after rolling it back."""
        if _file_bytes(self._wal_path) >= WAL_LIMIT_BYTES:
            raise _NotWritten()
        raw = _dbapi(connection)
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                raise _NotWritten() from exc
            raise
        self._writes += 1
        self._transactions += 1
        self._inline_transactions += 1
        try:
            result = operation(connection)
            raw.execute("COMMIT")
        except BaseException as exc:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            if isinstance(exc, Exception) and _is_lock_timeout(exc):
                self._writes -= 1  # rolled back: the writer thread writes it (operations may rerun)
                raise _NotWritten() from exc
            raise
        self._inline_commits_since_checkpoint += 1
        if self._inline_commits_since_checkpoint >= CHECKPOINT_EVERY_WRITES:
            self._inline_commits_since_checkpoint = 0
            self._checkpointer.request()
        return result

    def _hand_over(self) -> None:
        submitted, self._submitted = self._submitted, []
        self._jobs.put(submitted)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._submitted:
            self._hand_over()
        self._jobs.put(None)  # after every queued write: those are still committed
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._connection.close)
        await asyncio.to_thread(self._checkpointer.close)

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
                continue
            try:
                outcomes = self._commit(live)
            except Exception as exc:  # a defect outside any operation: each caller hears it
                log.exception("SQLite writer failed outside a transaction")
                outcomes = [(j, None, StoreError(f"the SQLite writer failed: {exc}; the write may or may not "
                                                 "have been committed; retry it")) for j in live]
            self._settle_soon(outcomes)

    def _commit(self, batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
        self._checkpoint_if_due()
        self._writes += len(batch)
        self._commits_since_checkpoint += 1
        try:
            self._transactions += 1
            results = _transaction(self._connection, lambda conn: [j.operation(conn) for j in batch], write=True)
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

    def _settle_soon(self, outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        try:
            self._loop.call_soon_threadsafe(_settle, outcomes)
        except RuntimeError:  # the loop is closed: no one is left waiting for these answers
            log.warning("SQLite writer: the event loop closed before %d committed writes were answered",
                        len(outcomes))

    def _checkpoint_if_due(self) -> None:
        wal_bytes = _file_bytes(self._wal_path)
        if wal_bytes < WAL_LIMIT_BYTES:
            if self._commits_since_checkpoint >= CHECKPOINT_EVERY_WRITES:
                self._commits_since_checkpoint = 0
                self._checkpointer.request()
            return
        # A running background checkpoint holds the checkpoint lock, and TRUNCATE does not wait for it.
        if not self._checkpointer.pause(timeout_s=CHECKPOINT_WAIT_MS / 1000):
            log.warning("SQLite checkpoint: a background checkpoint ran for %d ms; retrying before the next batch",
                        CHECKPOINT_WAIT_MS)
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
        finally:
            self._checkpointer.resume()
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


class _Checkpointer:
    """The thread that runs `wal_checkpoint(PASSIVE)` when the writer asks, beside the writes.

    PASSIVE copies what it can without waiting for any lock and never takes the write lock, so
    the writer keeps committing while it copies and syncs. Requests made while one runs coalesce
    into one more run."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._due = threading.Event()
        self._running = threading.Lock()  # held during a run, or while the writer truncates (`pause`)
        self._stopping = False
        self.runs = 0
        self._thread = threading.Thread(target=self._serve, name="triggerhub-sqlite-checkpointer", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._due.set()

    def pause(self, *, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a running checkpoint to end, and start none until `resume`;
        False when the wait ran out (nothing to resume then)."""
        return self._running.acquire(timeout=timeout_s)

    def resume(self) -> None:
        self._running.release()

    def close(self) -> None:
        """Blocking (call it from a thread): ends the thread, then closes its connection."""
        self._stopping = True
        self._due.set()
        self._thread.join()
        self._connection.close()

    def _serve(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stopping:
                return
            try:
                with self._running:
                    _, wal_pages, copied_pages = self._connection.exec_driver_sql(
                        "PRAGMA wal_checkpoint(PASSIVE)").one()
            except DBAPIError as exc:
                log.warning("SQLite background checkpoint failed; the next one retries: %s", exc.orig)
                continue
            self.runs += 1
            log.debug("SQLite background checkpoint: %s of %s WAL pages copied", copied_pages, wal_pages)


def _own_connection(engine: Engine) -> Connection:
    """A connection of one thread's own, closed rather than pooled at the end (its settings stay
    its own), that checkpoints only when told to."""
    connection = engine.connect()
    connection.detach()
    connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
    return connection


def _file_bytes(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _dbapi(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.dbapi_connection
    if raw is None:
        raise StoreError("the SQLite write connection is closed; nothing was written")
    return raw  # type: ignore[return-value]


def _transaction(conn: Connection, operation: Operation[T], *, write: bool) -> T:
    """A read runs as it is (each of its statements sees a committed state); a write first takes
    the write lock, so it never has to upgrade a read lock another writer could have made stale."""
    if not write:
        return operation(conn)
    # Straight on the sqlite3 connection: through SQLAlchemy, BEGIN and COMMIT cost the writer
    # thread tens of microseconds of Python each, holding the GIL the event loop needs meanwhile.
    raw = _dbapi(conn)
    # Their sqlite3 errors propagate as the direct statements' do (store/direct.py): callers
    # handle both kinds (`_is_lock_timeout`, sql.DATABASE_ERRORS).
    raw.execute("BEGIN IMMEDIATE")
    try:
        result = operation(conn)
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return result


def _is_lock_timeout(exc: Exception) -> bool:
    if isinstance(exc, DBAPIError):
        return _is_busy(exc)
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _is_busy(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, sqlite3.OperationalError) and exc.orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
