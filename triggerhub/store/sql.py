"""The Store over SQLAlchemy 2 async Core: SQLite (aiosqlite) embedded, PostgreSQL (asyncpg) distributed.

Races are settled by primary keys and conflict clauses inside one transaction, never by reading
first. On SQLite, writers in this process queue on one lock so no task sees "database is locked";
other processes wait on `busy_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Select, delete, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from triggerhub.errors import ConfigError, RevisionConflict, StoreError
from triggerhub.model import (
    Activation, Collection, Entity, Invocation, Subject, collection_of, now_ms,
)
from triggerhub.store import codec, statements
from triggerhub.store.base import Acceptance, ActivationQuery, FeedRegistration
from triggerhub.store.batching import GroupCommit
from triggerhub.store.migrations import migrate
from triggerhub.store.tables import activations, cursors, entities, events, feeds, pending, subjects

log = logging.getLogger(__name__)

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
SQLITE_BUSY_TIMEOUT_MS = 30_000
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


class SqlStore:
    """`Store` on `sqlite+aiosqlite:///<file>` or `postgresql+asyncpg://user@host/db`."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self._url = _parse_url(url)
        self._synchronous = sqlite_synchronous.upper()
        if self._synchronous not in SQLITE_SYNCHRONOUS:
            raise ConfigError(f"sqlite_synchronous={sqlite_synchronous!r} is not one of "
                              f"{', '.join(SQLITE_SYNCHRONOUS)}; NORMAL survives a process crash")
        self._is_sqlite = self._url.get_backend_name() == "sqlite"
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()
        self._writer: AsyncConnection | None = None  # SQLite: the one connection that writes
        self._acceptances = GroupCommit(self._accept_batch)
        self._completions = GroupCommit(self._complete_batch)
        self._sql = statements.Statements(self._url.get_backend_name())

    def __repr__(self) -> str:
        return f"SqlStore({self._url.render_as_string(hide_password=True)!r})"

    # lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine is not None:
            return
        if not self._is_sqlite:
            engine = create_async_engine(self._url, pool_size=10, max_overflow=20)
            async with self._disposed_on_error(engine):
                with self._translated("open the database and apply schema migrations"):
                    applied = await migrate(engine)
            self._engine = engine
            log.info("store %r open, migrations applied now: %s", self, applied or "none")
            return
        migrating = self._sqlite_engine()
        try:
            with self._translated("open the database and apply schema migrations"):
                applied = await migrate(migrating)
        finally:
            await migrating.dispose()
        # Reads run in autocommit with no ROLLBACK after each: one aiosqlite thread hop fewer.
        # The writer connection alone leaves autocommit, so its statements run in transactions.
        engine = self._sqlite_engine(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
        async with self._disposed_on_error(engine):
            with self._translated("open the database for writing"):
                writer = await engine.connect()
                self._writer = await writer.execution_options(isolation_level="SERIALIZABLE")
        self._engine = engine
        log.info("store %r open, migrations applied now: %s", self, applied or "none")

    def _sqlite_engine(self, **options: Any) -> AsyncEngine:
        engine = create_async_engine(self._url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **options)
        event.listen(engine.sync_engine, "connect", self._configure_sqlite)
        return engine

    @staticmethod
    @contextlib.asynccontextmanager
    async def _disposed_on_error(engine: AsyncEngine) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            await engine.dispose()
            raise

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        writer, self._writer = self._writer, None
        if writer is not None:
            async with self._write_lock:
                await writer.close()
        if engine is not None:
            await engine.dispose()

    def _configure_sqlite(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA synchronous={self._synchronous}")
        finally:
            cursor.close()

    # subjects ---------------------------------------------------------------------------------

    async def put_subject(self, subject: Subject) -> None:
        row = {"uuid": subject.uuid, "subject": subject.subject, "namespace": subject.namespace,
               "doc": codec.dumps(codec.subject_to_doc(subject))}
        with self._translated(f"store subject {subject.subject!r}"):
            async with self._write() as conn:
                await conn.execute(self._sql.upsert_subject, row)

    async def get_subject(self, uuid: str) -> Subject | None:
        with self._translated("read a subject"):
            doc = await self._scalar(self._sql.select_subject, {"uuid": uuid})
        return None if doc is None else codec.subject_from_doc(codec.loads(doc))

    async def list_subjects(self) -> list[Subject]:
        query = select(subjects.c.doc).order_by(subjects.c.subject, subjects.c.uuid)
        with self._translated("list subjects"):
            docs = await self._scalars(query)
        return [codec.subject_from_doc(codec.loads(doc)) for doc in docs]

    # entities ---------------------------------------------------------------------------------

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        with self._translated(f"read entity '{namespace}/{name}'"):
            async with self._read() as conn:
                row = (await conn.execute(self._sql.select_entity, {"path": namespace, "name": name})).first()
        return None if row is None else codec.entity_from_doc(row.collection, codec.loads(row.doc))

    async def put_entities(self, puts: Sequence[Entity], deletes: Sequence[Entity] = ()) -> list[Entity]:
        written = [replace(entity, revision=entity.revision + 1) for entity in puts]
        with self._translated(f"write {len(puts)} and delete {len(deletes)} entities"):
            async with self._write() as conn:
                for old, new in zip(puts, written):
                    if old.revision == 0:
                        result = await conn.execute(self._sql.insert_entity, statements.entity_row(new))
                    else:
                        result = await conn.execute(self._sql.update_entity, statements.entity_update(old, new))
                    if result.rowcount != 1:
                        raise await self._conflict(conn, old, "write")
                for entity in deletes:
                    result = await conn.execute(self._sql.delete_entity, {
                        "path": entity.namespace, "name": entity.name,
                        "collection": collection_of(entity).value, "revision": entity.revision})
                    if result.rowcount != 1:
                        raise await self._conflict(conn, entity, "delete")
        return written

    async def _conflict(self, conn: AsyncConnection, entity: Entity, verb: str) -> RevisionConflict:
        """Explain a refused write; the refusal itself came from the conditional statement."""
        collection = collection_of(entity).value
        where = f"{collection} '{entity.namespace}/{entity.name}'"
        row = (await conn.execute(self._sql.select_entity, {"path": entity.namespace, "name": entity.name})).first()
        if row is None:
            return RevisionConflict(f"cannot {verb} {where} at revision {entity.revision}: it does not exist; "
                                    "create it with revision 0")
        stored = f"revision {row.revision}"
        if row.collection != collection:
            return RevisionConflict(f"cannot {verb} {where}: the name is taken by {row.collection} "
                                    f"'{entity.namespace}/{entity.name}' ({stored}); choose another name")
        if entity.revision == 0:
            return RevisionConflict(f"cannot create {where}: it exists already at {stored}; "
                                    f"update it with revision {row.revision}")
        return RevisionConflict(f"cannot {verb} {where} at revision {entity.revision}: the stored one is at "
                                f"{stored} (changed concurrently); re-read it and retry")

    async def list_entities(self, collection: Collection, namespace: str, *, package: str | None = None,
                            skip: int = 0, limit: int = 30) -> list[Entity]:
        query = (select(entities.c.doc).where(*statements.entity_filter(collection, namespace, package))
                 .order_by(entities.c.updated_ms.desc(), entities.c.path, entities.c.name)
                 .offset(skip).limit(limit))
        with self._translated(f"list {collection.value} of namespace {namespace!r}"):
            docs = await self._scalars(query)
        return [codec.entity_from_doc(collection, codec.loads(doc)) for doc in docs]

    async def count_entities(self, collection: Collection, namespace: str, *, package: str | None = None) -> int:
        query = select(func.count()).select_from(entities).where(*statements.entity_filter(collection, namespace, package))
        with self._translated(f"count {collection.value} of namespace {namespace!r}"):
            return int(await self._scalar(query) or 0)

    # activations ------------------------------------------------------------------------------

    async def accept(self, acceptance: Acceptance) -> bool:
        what = f"accept event {acceptance.event.id!r}" if acceptance.event else "accept invocations"
        with self._translated(what):
            return await self._acceptances.submit(acceptance)

    async def _accept_batch(self, batch: list[Acceptance]) -> list[bool]:
        """Writes every acceptance whose event id is new (first one wins within the batch)."""
        event_rows = {a.event.id: statements.event_row(a.event) for a in reversed(batch) if a.event is not None}
        async with self._write() as conn:
            fresh: set[str] = set()
            if event_rows:
                fresh = set((await conn.execute(self._sql.insert_events, list(event_rows.values()))).scalars())
            answers = []
            for acceptance in batch:
                accepted = acceptance.event is None or acceptance.event.id in fresh
                if acceptance.event is not None:
                    fresh.discard(acceptance.event.id)
                    if not accepted:
                        log.info("event %s was accepted before; nothing written", acceptance.event.id)
                answers.append(accepted)
            taken = [a for a, accepted in zip(batch, answers) if accepted]
            pending_rows = [statements.pending_row(i) for a in taken for i in a.invocations]
            activation_rows = [statements.activation_row(r) for a in taken for r in a.activations]
            # One row per feed, the last value accepted wins (one statement may not touch a row twice).
            cursor_rows = {a.cursor[0]: {"feed_id": a.cursor[0], "value": a.cursor[1], "updated_ms": now_ms()}
                           for a in taken if a.cursor is not None}
            if pending_rows:
                await conn.execute(pending.insert(), pending_rows)
            if activation_rows:
                await conn.execute(activations.insert(), activation_rows)
            if cursor_rows:
                await conn.execute(self._sql.upsert_cursor, list(cursor_rows.values()))
        return answers

    async def complete(self, activation: Activation) -> bool:
        with self._translated(f"record activation {activation.activation_id}"):
            return await self._completions.submit(activation)

    async def _complete_batch(self, batch: list[Activation]) -> list[bool]:
        """Inserts each new record and drops its pending row; an id already recorded (or seen
        earlier in the batch) answers False and changes nothing."""
        rows = {a.activation_id: statements.activation_row(a) for a in reversed(batch)}
        async with self._write() as conn:
            inserted = set((await conn.execute(self._sql.insert_activations, list(rows.values()))).scalars())
            if inserted:
                await conn.execute(self._sql.delete_pending, {"ids": sorted(inserted)})
        answers = []
        for activation in batch:
            answers.append(activation.activation_id in inserted)
            if activation.activation_id in inserted:
                inserted.discard(activation.activation_id)
            else:
                log.info("activation %s was recorded before; kept the first record", activation.activation_id)
        return answers

    async def get_activation(self, namespace: str, activation_id: str) -> Activation | None:
        with self._translated(f"read activation {activation_id!r}"):
            doc = await self._scalar(self._sql.select_activation, {"namespace": namespace, "activation_id": activation_id})
        return None if doc is None else codec.activation_from_doc(codec.loads(doc))

    async def list_activations(self, query: ActivationQuery) -> list[Activation]:
        statement = (select(activations.c.doc).where(*statements.activation_filter(query))
                     .order_by(activations.c.start_ms.desc(), activations.c.activation_id.desc())
                     .offset(query.skip).limit(query.limit))
        with self._translated(f"list activations of namespace {query.namespace!r}"):
            docs = await self._scalars(statement)
        return [codec.activation_from_doc(codec.loads(doc)) for doc in docs]

    async def count_activations(self, query: ActivationQuery) -> int:
        statement = select(func.count()).select_from(activations).where(*statements.activation_filter(query))
        with self._translated(f"count activations of namespace {query.namespace!r}"):
            return int(await self._scalar(statement) or 0)

    async def list_pending(self) -> list[Invocation]:
        query = select(pending.c.doc).order_by(pending.c.accepted_ms, pending.c.activation_id)
        with self._translated("list pending invocations"):
            docs = await self._scalars(query)
        return [codec.invocation_from_doc(codec.loads(doc)) for doc in docs]

    # feeds, events, cursors -------------------------------------------------------------------

    async def put_feed(self, registration: FeedRegistration) -> None:
        row = {"trigger_fqn": registration.trigger, "namespace": registration.namespace,
               "doc": codec.dumps(codec.feed_to_doc(registration))}
        with self._translated(f"store the feed of trigger {registration.trigger!r}"):
            async with self._write() as conn:
                await conn.execute(self._sql.upsert_feed, row)

    async def get_feed(self, trigger: str) -> FeedRegistration | None:
        with self._translated(f"read the feed of trigger {trigger!r}"):
            doc = await self._scalar(select(feeds.c.doc).where(feeds.c.trigger_fqn == trigger))
        return None if doc is None else codec.feed_from_doc(codec.loads(doc))

    async def delete_feed(self, trigger: str) -> None:
        with self._translated(f"delete the feed of trigger {trigger!r}"):
            async with self._write() as conn:
                await conn.execute(delete(feeds).where(feeds.c.trigger_fqn == trigger))

    async def list_feeds(self) -> list[FeedRegistration]:
        with self._translated("list feeds"):
            docs = await self._scalars(select(feeds.c.doc).order_by(feeds.c.trigger_fqn))
        return [codec.feed_from_doc(codec.loads(doc)) for doc in docs]

    async def get_cursor(self, feed_id: str) -> str | None:
        with self._translated(f"read the cursor of feed {feed_id!r}"):
            return await self._scalar(select(cursors.c.value).where(cursors.c.feed_id == feed_id))

    async def set_cursor(self, feed_id: str, value: str) -> None:
        with self._translated(f"store the cursor of feed {feed_id!r}"):
            async with self._write() as conn:
                await conn.execute(self._sql.upsert_cursor, {"feed_id": feed_id, "value": value, "updated_ms": now_ms()})

    async def count_events(self, trigger: str | None = None) -> int:
        """`trigger` is the fully qualified name, `/guest/t` or `/guest/pkg/t`; None counts all."""
        query = select(func.count()).select_from(events)
        if trigger is not None:
            query = query.where(events.c.trigger_fqn == trigger)
        with self._translated("count events"):
            return int(await self._scalar(query) or 0)

    # plumbing ---------------------------------------------------------------------------------

    @property
    def _opened(self) -> AsyncEngine:
        if self._engine is None:
            raise StoreError(f"store {self!r} is not open; call open() first")
        return self._engine

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. Invariant on SQLite: its first statement must write, so the
        driver's implicit BEGIN takes the write lock at once (a read first could not upgrade
        without SQLITE_BUSY when another process wrote meanwhile)."""
        engine = self._opened
        if not self._is_sqlite:  # PostgreSQL: concurrent transactions; keys and conflict clauses settle races
            async with engine.begin() as conn:
                yield conn
            return
        # SQLite allows one writer per file: tasks of this process queue here rather than in
        # busy_timeout, and the writer connection is kept, saving a checkout and a rollback.
        async with self._write_lock:
            writer = self._writer
            if writer is None:
                raise StoreError(f"store {self!r} is not open; call open() first")
            if writer.in_transaction():  # a cancelled write may have left its transaction behind
                await writer.rollback()
            async with writer.begin():
                yield writer

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._opened.connect() as conn:
            yield conn

    async def _scalar(self, query: Select[Any], params: dict[str, Any] | None = None) -> Any:
        async with self._read() as conn:
            return (await conn.execute(query, params)).scalar_one_or_none()

    async def _scalars(self, query: Select[Any]) -> list[Any]:
        async with self._read() as conn:
            return list((await conn.execute(query)).scalars())

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn database and driver failures into StoreError naming the operation and database."""
        try:
            yield
        except (DBAPIError, PoolTimeoutError, OSError) as exc:
            raise StoreError(f"could not {what} in {self!r}: {_describe(exc)}; "
                             "check that the database is reachable and writable") from exc


# --------------------------------------------------------------------------- helpers


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"store URL {url!r} is not a database URL; use sqlite+aiosqlite:///<file> "
                          "or postgresql+asyncpg://user:password@host/db") from exc
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise ConfigError(f"store URL backend {backend!r} is not supported; use sqlite or postgresql")
    if parsed.drivername == backend:
        parsed = parsed.set(drivername=_DRIVERS[backend])
    if parsed.drivername != _DRIVERS[backend]:
        raise ConfigError(f"store URL driver {parsed.drivername!r} is not supported; use {_DRIVERS[backend]}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError("store URL names no SQLite file; an in-memory database would lose accepted "
                          "events on restart; use sqlite+aiosqlite:///<path to file>")
    return parsed


def _describe(exc: BaseException) -> str:
    # The driver's own message, without SQLAlchemy's SQL and parameters (they may carry user data).
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"
