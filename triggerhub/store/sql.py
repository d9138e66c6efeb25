"""The Store over SQLAlchemy 2 Core: SQLite (sqlite3) embedded, PostgreSQL (asyncpg) distributed.

Each operation's statements live once in `operations.py`; `runners.py` runs them as one
transaction per dialect (SQLite: group commits in one writer thread, reads by key inline;
PostgreSQL through asyncpg). On SQLite the hot paths (accept, complete, reads by key) use the
sqlite3 connection directly (`direct.py`). Races are settled by primary keys and conflict clauses
inside one transaction, never by reading first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, and_, delete, event, func, or_, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import create_async_engine

from triggerhub.errors import ConfigError, StoreError
from triggerhub.model import (
    Activation, ApiRoute, Collection, DeadLetter, Entity, Invocation, RuleCounts, Subject, TriggerEvent, now_ms,
)
from triggerhub.observe.metrics import timed_methods
from triggerhub.store import codec, deliveries, derived, direct, event_log, operations, statements
from triggerhub.store.base import Acceptance, ActivationQuery, DeriveStep, FeedRegistration, Pruned
from triggerhub.store.batching import GroupCommit
from triggerhub.store.migrations import migrate
from triggerhub.store.runners import (
    SQLITE_BUSY_TIMEOUT_MS, AsyncRunner, Runner, SqliteRunner, WriterStatistics, configure_sqlite,
)
from triggerhub.store.tables import (
    activations, api_routes, cursors, entities, events, feeds, pending, rule_counts, subjects,
)

if TYPE_CHECKING:  # pg_direct imports asyncpg: loaded by PostgreSQL stores only, never by a hub on SQLite
    from triggerhub.store.pg_direct import PgDirect

log = logging.getLogger(__name__)

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
# A PostgreSQL store adds asyncpg's own (pg_direct.DRIVER_ERRORS) to these.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError, PoolTimeoutError, OSError, sqlite3.Error)
EVENT_ACTIVATIONS_MAX = 1000  # records in one event's lineage (a sequence of 50 retried 20 times)
# Timed into triggerhub_store_operation_seconds{operation}: the calls on every event's and invocation's path.
TIMED_OPERATIONS = ("accept", "complete", "get_entity", "get_activation", "get_subject", "get_event",
                    "list_activations", "list_event_activations", "put_entities")


@timed_methods(*TIMED_OPERATIONS)
class SqlStore:
    """`Store` on `sqlite+aiosqlite:///<file>` or `postgresql+asyncpg://user@host/db`."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self._url = _parse_url(url)
        self._synchronous = sqlite_synchronous.upper()
        if self._synchronous not in SQLITE_SYNCHRONOUS:
            raise ConfigError(f"sqlite_synchronous={sqlite_synchronous!r} is not one of "
                              f"{', '.join(SQLITE_SYNCHRONOUS)}; NORMAL survives a process crash")
        self._is_sqlite = self._url.get_backend_name() == "sqlite"
        self._errors = DATABASE_ERRORS
        if not self._is_sqlite:
            from triggerhub.store.pg_direct import DRIVER_ERRORS

            self._errors = (*DATABASE_ERRORS, *DRIVER_ERRORS)
        self._runner: Runner | None = None
        self._pg: PgDirect | None = None  # PostgreSQL's hot statements (pg_direct.py)
        self._acceptances = GroupCommit(self._accept_batch)
        self._completions = GroupCommit(self._complete_batch)
        # PostgreSQL: concurrent reads of activations by id share one statement too (an invoker
        # asks for each invocation whether its record exists, before running it).
        self._activation_reads = GroupCommit(self._read_activation_batch)
        self._dialect = self._url.get_backend_name()
        self._sql = statements.Statements(self._dialect)
        if self._is_sqlite:
            self._accept_op: Callable[..., list[bool]] = direct.accept
            self._complete_op: Callable[..., set[str]] = direct.complete
        else:
            self._accept_op = partial(operations.accept, sql=self._sql)
            self._complete_op = partial(operations.complete, sql=self._sql)

    def __repr__(self) -> str:
        return f"SqlStore({self._url.render_as_string(hide_password=True)!r})"

    # lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._runner is not None:
            return
        if self._is_sqlite:
            # Migrations run on a short-lived aiosqlite engine: migrations.py serves both dialects.
            engine = create_async_engine(self._url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(engine.sync_engine, "connect", partial(configure_sqlite, synchronous=self._synchronous))
        else:
            engine = create_async_engine(self._url, pool_size=10, max_overflow=20)
        try:
            with self._translated("open the database and apply schema migrations"):
                applied = await migrate(engine)
            if self._is_sqlite:
                await engine.dispose()
                with self._translated("open the database for writing"):
                    self._runner = await SqliteRunner.open(self._url, self._synchronous)
            else:
                from triggerhub.store.pg_direct import PgDirect

                direct_pg = PgDirect(self._url)
                with self._translated("open the database for key reads"):
                    await direct_pg.open()
                self._runner, self._pg = AsyncRunner(engine), direct_pg
        except BaseException:
            await engine.dispose()
            raise
        log.info("store %r open, migrations applied now: %s", self, applied or "none")

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        direct_pg, self._pg = self._pg, None
        if direct_pg is not None:
            await direct_pg.close()
        if runner is not None:
            await runner.close()

    def statistics(self) -> WriterStatistics | None:
        """SQLite: the writer thread's commits so far; None on PostgreSQL (pooled transactions)."""
        return self._runner.statistics() if isinstance(self._runner, SqliteRunner) else None

    # subjects ---------------------------------------------------------------------------------

    async def put_subject(self, subject: Subject) -> None:
        row = {"uuid": subject.uuid, "subject": subject.subject, "namespace": subject.namespace,
               "doc": codec.dumps(codec.subject_to_doc(subject))}
        with self._translated(f"store subject {subject.subject!r}"):
            await self._opened.write(partial(operations.put_subject, sql=self._sql, row=row))

    async def get_subject(self, uuid: str) -> Subject | None:
        if self._pg is not None:
            with self._translated("read a subject"):
                found = await self._pg.subject_doc(uuid)
            return None if found is None else codec.subject_from_doc(codec.loads(found))
        if self._is_sqlite:
            read: Callable[[Connection], str | None] = partial(direct.select_subject_doc, uuid=uuid)
        else:
            read = partial(operations.scalar, query=self._sql.select_subject, params={"uuid": uuid})
        with self._translated("read a subject"):
            doc = await self._opened.read(read)
        return None if doc is None else codec.subject_from_doc(codec.loads(doc))

    async def list_subjects(self) -> list[Subject]:
        query = select(subjects.c.doc).order_by(subjects.c.subject, subjects.c.uuid)
        with self._translated("list subjects"):
            docs = await self._opened.read(partial(operations.scalars, query=query), listing=True)
        return [codec.subject_from_doc(codec.loads(doc)) for doc in docs]

    async def delete_subject(self, uuid: str) -> bool:
        with self._translated(f"delete subject {uuid!r}"):
            removed = await self._opened.write(partial(operations.delete_subject, sql=self._sql, uuid=uuid))
        return removed > 0

    # entities ---------------------------------------------------------------------------------

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        if self._pg is not None:
            with self._translated(f"read entity '{namespace}/{name}'"):
                found = await self._pg.entity(namespace, name)
            return None if found is None else codec.entity_from_doc(found[0], codec.loads(found[2]))
        if self._is_sqlite:
            read: Callable[[Connection], Any] = partial(direct.select_entity, path=namespace, name=name)
        else:
            read = partial(operations.first, query=self._sql.select_entity, params={"path": namespace, "name": name})
        with self._translated(f"read entity '{namespace}/{name}'"):
            row = await self._opened.read(read)
        if row is None:
            return None
        collection, _revision, doc = row
        return codec.entity_from_doc(collection, codec.loads(doc))

    async def get_entity_generation(self) -> int:
        """How many transactions wrote entities so far (any process): a cache filled at one value
        is current while the value stays."""
        if self._pg is not None:
            with self._translated("read the entity generation"):
                return await self._pg.entity_generation()
        if self._is_sqlite:
            read: Callable[[Connection], int | None] = direct.select_entity_generation
        else:
            read = partial(operations.scalar, query=self._sql.select_entity_generation, params={})
        with self._translated("read the entity generation"):
            generation = await self._opened.read(read)
        return int(generation or 0)

    async def put_entities(self, puts: Sequence[Entity], deletes: Sequence[Entity] = ()) -> list[Entity]:
        written = [replace(entity, revision=entity.revision + 1) for entity in puts]
        with self._translated(f"write {len(puts)} and delete {len(deletes)} entities"):
            await self._opened.write(partial(operations.put_entities, sql=self._sql, puts=puts, written=written,
                                             deletes=deletes))
        return written

    async def list_entities(self, collection: Collection, namespace: str, *, package: str | None = None,
                            skip: int = 0, limit: int = 30) -> list[Entity]:
        query = (select(entities.c.doc).where(*statements.entity_filter(collection, namespace, package))
                 .order_by(entities.c.updated_ms.desc(), entities.c.path, entities.c.name)
                 .offset(skip).limit(limit))
        with self._translated(f"list {collection.value} of namespace {namespace!r}"):
            docs = await self._opened.read(partial(operations.scalars, query=query), listing=True)
        return [codec.entity_from_doc(collection, codec.loads(doc)) for doc in docs]

    async def count_entities(self, collection: Collection, namespace: str, *, package: str | None = None) -> int:
        query = select(func.count()).select_from(entities).where(*statements.entity_filter(collection, namespace, package))
        with self._translated(f"count {collection.value} of namespace {namespace!r}"):
            return await self._count(query)

    # activations ------------------------------------------------------------------------------

    async def accept(self, acceptance: Acceptance) -> bool:
        what = f"accept event {acceptance.event.id!r}" if acceptance.event else "accept invocations"
        with self._translated(what):
            if self._is_sqlite:  # its writer thread commits concurrent writes together
                return (await self._accept_batch([acceptance]))[0]
            return await self._acceptances.submit(acceptance)

    async def _accept_batch(self, batch: list[Acceptance]) -> list[bool]:
        if self._pg is not None and all(map(_plain, batch)):
            answers = await self._accept_plain(batch)
        else:
            answers = await self._opened.write(partial(self._accept_op, batch=batch))
        for acceptance, accepted in zip(batch, answers):
            if acceptance.event is not None and not accepted:
                log.info("event %s was accepted before; nothing written", acceptance.event.id)
        return answers

    async def _accept_plain(self, batch: list[Acceptance]) -> list[bool]:
        """PostgreSQL's fires and invokes with their records in one statement (pg_direct.ACCEPT),
        answering as `operations.accept` does: the first acceptance of an event id in the batch
        is written when the id is new, the others are not."""
        assert self._pg is not None
        events: list[dict[str, Any]] = []
        queued: list[dict[str, Any]] = []
        counts: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        candidates: set[int] = set()
        seen: set[str] = set()
        for index, acceptance in enumerate(batch):
            event = acceptance.event
            if event is not None:
                if event.id in seen:
                    continue
                seen.add(event.id)
                events.append(statements.event_row(event, acceptance.decisions))
            event_id = event.id if event is not None else None
            candidates.add(index)
            queued.extend({**statements.pending_row(i), "event_id": event_id} for i in acceptance.invocations)
            counts.extend({"rule": rule, "matched": 1, "filtered": 0, "event_id": event_id}
                          for rule in acceptance.matched_rules)
            counts.extend({"rule": rule, "matched": 0, "filtered": 1, "event_id": event_id}
                          for rule in acceptance.filtered_rules)
            records.extend({**statements.activation_row(r), "accepted_event": event_id} for r in acceptance.activations)
        fresh = await self._pg.accept(events, queued, counts, records)
        return [index in candidates and (acceptance.event is None or acceptance.event.id in fresh)
                for index, acceptance in enumerate(batch)]

    async def complete(self, activation: Activation) -> bool:
        with self._translated(f"record activation {activation.activation_id}"):
            if self._is_sqlite:
                return (await self._complete_batch([activation]))[0]
            return await self._completions.submit(activation)

    async def _complete_batch(self, batch: list[Activation]) -> list[bool]:
        """An id already recorded (or seen earlier in the batch) answers False and changes nothing."""
        if self._pg is not None:  # one statement (pg_direct.COMPLETE), the first of an id in the batch wins
            rows = {a.activation_id: statements.activation_row(a) for a in reversed(batch)}
            inserted = await self._pg.complete(list(rows.values()))
        else:
            inserted = await self._opened.write(partial(self._complete_op, batch=batch))
        answers = []
        for activation in batch:
            answers.append(activation.activation_id in inserted)
            if activation.activation_id in inserted:
                inserted.discard(activation.activation_id)
            else:
                log.info("activation %s was recorded before; kept the first record", activation.activation_id)
        return answers

    async def get_activation(self, namespace: str, activation_id: str) -> Activation | None:
        if self._pg is not None:
            with self._translated(f"read activation {activation_id!r}"):
                found = await self._activation_reads.submit((namespace, activation_id))
            return None if found is None else codec.activation_from_doc(codec.loads(found))
        if self._is_sqlite:
            read: Callable[[Connection], str | None] = partial(direct.select_activation_doc, namespace=namespace,
                                                               activation_id=activation_id)
        else:
            read = partial(operations.scalar, query=self._sql.select_activation,
                           params={"namespace": namespace, "activation_id": activation_id})
        with self._translated(f"read activation {activation_id!r}"):
            doc = await self._opened.read(read)
        return None if doc is None else codec.activation_from_doc(codec.loads(doc))

    async def _read_activation_batch(self, keys: list[tuple[str, str]]) -> list[str | None]:
        assert self._pg is not None  # PostgreSQL only
        return await self._pg.activation_docs(keys)

    async def list_activations(self, query: ActivationQuery) -> list[Activation]:
        statement = (select(activations.c.doc).where(*statements.activation_filter(query))
                     .order_by(activations.c.start_ms.desc(), activations.c.activation_id.desc())
                     .offset(query.skip).limit(query.limit))
        with self._translated(f"list activations of namespace {query.namespace!r}"):
            docs = await self._opened.read(partial(operations.scalars, query=statement), listing=True)
        return [codec.activation_from_doc(codec.loads(doc)) for doc in docs]

    async def count_activations(self, query: ActivationQuery) -> int:
        statement = select(func.count()).select_from(activations).where(*statements.activation_filter(query))
        with self._translated(f"count activations of namespace {query.namespace!r}"):
            return await self._count(statement)

    async def list_event_activations(self, namespace: str, event_id: str) -> list[Activation]:
        statement = (select(activations.c.doc)
                     .where(activations.c.event_id == event_id, activations.c.namespace == namespace)
                     .order_by(activations.c.start_ms, activations.c.activation_id).limit(EVENT_ACTIVATIONS_MAX))
        with self._translated(f"list the activations of event {event_id!r}"):
            docs = await self._opened.read(partial(operations.scalars, query=statement), listing=True)
        return [codec.activation_from_doc(codec.loads(doc)) for doc in docs]

    async def list_pending(self) -> list[Invocation]:
        query = select(pending.c.doc).order_by(pending.c.accepted_ms, pending.c.activation_id)
        with self._translated("list pending invocations"):
            docs = await self._opened.read(partial(operations.scalars, query=query), listing=True)
        return [codec.invocation_from_doc(codec.loads(doc)) for doc in docs]

    # feeds, events, cursors -------------------------------------------------------------------

    async def put_feed(self, registration: FeedRegistration) -> None:
        row = {"trigger_fqn": registration.trigger, "namespace": registration.namespace,
               "doc": codec.dumps(codec.feed_to_doc(registration))}
        with self._translated(f"store the feed of trigger {registration.trigger!r}"):
            await self._opened.write(partial(operations.execute, statement=self._sql.upsert_feed, params=row))

    async def get_feed(self, trigger: str) -> FeedRegistration | None:
        if self._is_sqlite:
            read: Callable[[Connection], str | None] = partial(direct.select_feed_doc, trigger=trigger)
        else:
            read = partial(operations.scalar, query=select(feeds.c.doc).where(feeds.c.trigger_fqn == trigger))
        with self._translated(f"read the feed of trigger {trigger!r}"):
            doc = await self._opened.read(read)
        return None if doc is None else codec.feed_from_doc(codec.loads(doc))

    async def delete_feed(self, trigger: str) -> None:
        with self._translated(f"delete the feed of trigger {trigger!r}"):
            await self._opened.write(partial(operations.execute,
                                             statement=delete(feeds).where(feeds.c.trigger_fqn == trigger)))

    async def list_feeds(self) -> list[FeedRegistration]:
        query = select(feeds.c.doc).order_by(feeds.c.trigger_fqn)
        with self._translated("list feeds"):
            docs = await self._opened.read(partial(operations.scalars, query=query), listing=True)
        return [codec.feed_from_doc(codec.loads(doc)) for doc in docs]

    async def get_cursor(self, feed_id: str) -> str | None:
        query = select(cursors.c.value).where(cursors.c.feed_id == feed_id)
        with self._translated(f"read the cursor of feed {feed_id!r}"):
            value: str | None = await self._opened.read(partial(operations.scalar, query=query))
        return value

    async def set_cursor(self, feed_id: str, value: str) -> None:
        row = {"feed_id": feed_id, "value": value, "updated_ms": now_ms()}
        with self._translated(f"store the cursor of feed {feed_id!r}"):
            await self._opened.write(partial(operations.execute, statement=self._sql.upsert_cursor, params=row))

    async def count_events(self, trigger: str | None = None, *, since_ms: int | None = None,
                           upto_ms: int | None = None) -> int:
        """`trigger` is the fully qualified name, `/guest/t` or `/guest/pkg/t`; None counts all."""
        query = select(func.count()).select_from(events).where(*event_log.window_filter(trigger, since_ms, upto_ms))
        with self._translated("count events"):
            return await self._count(query)

    async def list_events(self, trigger: str, *, since_ms: int, upto_ms: int, after: tuple[int, str] | None = None,
                          limit: int = 500) -> list[TriggerEvent]:
        read = partial(event_log.list_window, trigger=trigger, since_ms=since_ms, upto_ms=upto_ms, after=after,
                       limit=limit)
        with self._translated(f"list the events of trigger {trigger!r}"):
            docs = await self._opened.read(read, listing=True)
        return [codec.event_from_doc(codec.loads(doc)) for doc in docs]

    async def get_events(self, event_ids: Sequence[str]) -> list[TriggerEvent]:
        with self._translated(f"read {len(event_ids)} events"):
            docs = await self._opened.read(partial(event_log.select_docs, event_ids=event_ids), listing=True)
        return [codec.event_from_doc(codec.loads(doc)) for doc in docs]

    async def prune_events(self, *, before_ms: int, max_per_trigger: int, max_total: int, batch: int) -> Pruned:
        """The first bound that does not hold yet, in the order age, per trigger, in all (so the
        count bounds apply to what the bounds before them left); see store/event_log.py."""
        postgres = not self._is_sqlite
        with self._translated("prune the event log"):
            if before_ms > 0:
                aged = await self._opened.write(partial(event_log.delete_aged, before_ms=before_ms, batch=batch,
                                                        postgres=postgres))
                if aged.events:
                    return aged
            if max_per_trigger > 0:
                cutoffs = await self._opened.read(partial(event_log.crowded_cutoffs, keep=max_per_trigger), listing=True)
                if cutoffs:
                    deleted = await self._opened.write(partial(event_log.delete_through, cutoffs=cutoffs, batch=batch,
                                                               postgres=postgres))
                    if deleted:
                        return Pruned(by_trigger_bound=deleted)
            if max_total > 0:
                cutoffs = await self._opened.read(partial(event_log.total_cutoff, keep=max_total), listing=True)
                if cutoffs:
                    return Pruned(by_total_bound=await self._opened.write(partial(
                        event_log.delete_through, cutoffs=cutoffs, batch=batch, postgres=postgres)))
        return Pruned()

    async def get_rule_counts(self, rule: str) -> RuleCounts:
        query = select(rule_counts.c.matched, rule_counts.c.filtered).where(rule_counts.c.rule == rule)
        with self._translated(f"read the counts of rule {rule!r}"):
            row = await self._opened.read(partial(operations.first, query=query, params={}))
        return RuleCounts() if row is None else RuleCounts(int(row.matched), int(row.filtered))

    async def get_event(self, event_id: str) -> TriggerEvent | None:
        query = select(events.c.doc).where(events.c.id == event_id)
        with self._translated(f"read event {event_id!r}"):
            doc = await self._opened.read(partial(operations.scalar, query=query))
        return None if doc is None else codec.event_from_doc(codec.loads(doc))

    # derived triggers -----------------------------------------------------------------------

    async def change_derived(self, steps: Sequence[DeriveStep]) -> None:
        if not steps:
            return
        with self._translated(f"change the state of {len(steps)} derived trigger key(s)"):
            await self._opened.write(partial(derived.apply_steps, steps=steps, lock=not self._is_sqlite))

    async def list_due_derived(self, now_ms: int, *, limit: int) -> list[tuple[str, str]]:
        with self._translated("list due derived trigger keys"):
            return await self._opened.read(partial(derived.list_due, now_ms=now_ms, limit=limit), listing=True)

    async def next_derived_due_ms(self) -> int | None:
        with self._translated("read the next derived trigger deadline"):
            return await self._opened.read(derived.next_due, listing=True)

    async def list_derived_outbox(self, *, limit: int) -> list[TriggerEvent]:
        with self._translated("list derived events waiting"):
            return await self._opened.read(partial(derived.list_outbox, limit=limit), listing=True)

    async def delete_derived_outbox(self, event_ids: Sequence[str]) -> None:
        with self._translated(f"delete {len(event_ids)} derived event(s) from the outbox"):
            await self._opened.write(partial(derived.delete_outbox, event_ids=event_ids))

    async def get_derived_state(self, trigger: str, key: str) -> tuple[str, int | None] | None:
        with self._translated(f"read the state of key {key!r} of derived trigger {trigger!r}"):
            return await self._opened.read(partial(derived.get_state, trigger=trigger, key=key), listing=True)

    # API gateway routes -----------------------------------------------------------------------

    async def put_route(self, route: ApiRoute) -> None:
        row = {"namespace": route.namespace, "base_path": route.base_path, "rel_path": route.rel_path,
               "verb": route.verb, "doc": codec.dumps(route.to_json())}
        with self._translated(f"store route {route.verb} {route.base_path}{route.rel_path}"):
            await self._opened.write(partial(operations.execute, statement=self._sql.upsert_route, params=row))

    async def list_routes(self, namespace: str, *, base_path: str | None = None) -> list[ApiRoute]:
        query = (select(api_routes.c.doc).where(api_routes.c.namespace == namespace)
                 .order_by(api_routes.c.base_path, api_routes.c.rel_path, api_routes.c.verb))
        if base_path is not None:
            query = query.where(api_routes.c.base_path == base_path)
        with self._translated(f"list the routes of namespace {namespace!r}"):
            docs = await self._opened.read(partial(operations.scalars, query=query), listing=True)
        return [ApiRoute.from_json(codec.loads(doc)) for doc in docs]

    async def delete_routes(self, routes: Sequence[ApiRoute]) -> int:
        if not routes:
            return 0
        keys = [and_(api_routes.c.namespace == r.namespace, api_routes.c.base_path == r.base_path,
                     api_routes.c.rel_path == r.rel_path, api_routes.c.verb == r.verb) for r in routes]
        with self._translated(f"delete {len(routes)} route(s)"):
            deleted: int = await self._opened.write(partial(operations.execute_counted,
                                                            statement=delete(api_routes).where(or_(*keys))))
        return deleted

    # retries and dead letters (issue 14) ----------------------------------------------------------

    async def put_retry(self, invocation: Invocation, *, rule: str, due_ms: int) -> bool:
        with self._translated(f"keep retry {invocation.activation_id} of rule {rule!r}"):
            return await self._opened.write(partial(deliveries.put_retry, dialect=self._dialect, invocation=invocation,
                                                    rule=rule, due_ms=due_ms))

    async def claim_retries(self, *, now_ms: int, owner: str, lease_ms: int, limit: int) -> list[Invocation]:
        with self._translated("claim due retries"):
            return await self._opened.write(partial(deliveries.claim_retries, now_ms=now_ms, owner=owner,
                                                    lease_ms=lease_ms, limit=limit))

    async def prepare_retry(self, invocation: Invocation) -> bool:
        with self._translated(f"start retry {invocation.activation_id}"):
            return await self._opened.write(partial(deliveries.prepare_retry, invocation=invocation))

    async def delete_pending(self, activation_id: str) -> bool:
        with self._translated(f"drop the pending row of recorded activation {activation_id}"):
            return await self._opened.write(partial(deliveries.delete_pending, activation_id=activation_id)) > 0

    async def delete_retry(self, activation_id: str, *, owner: str) -> bool:
        with self._translated(f"drop started retry {activation_id}"):
            return await self._opened.write(partial(deliveries.delete_retry, activation_id=activation_id,
                                                    owner=owner)) > 0

    async def next_retry_due_ms(self) -> int | None:
        with self._translated("read the next retry's due time"):
            return await self._opened.read(deliveries.next_due_ms, listing=True)

    async def count_retries(self, rule: str | None = None) -> int:
        with self._translated("count waiting retries"):
            return await self._opened.read(partial(deliveries.count_retries, rule=rule), listing=True)

    async def put_dead_letter(self, letter: DeadLetter) -> None:
        with self._translated(f"keep dead letter {letter.id} of rule {letter.rule!r}"):
            await self._opened.write(partial(deliveries.put_dead_letter, dialect=self._dialect, letter=letter))

    async def list_dead_letters(self, rule: str, *, ids: Sequence[str] | None = None, skip: int = 0,
                                limit: int = 30) -> list[DeadLetter]:
        with self._translated(f"list the dead letters of rule {rule!r}"):
            return await self._opened.read(partial(deliveries.list_dead_letters, rule=rule, ids=ids, skip=skip,
                                                   limit=limit), listing=True)

    async def count_dead_letters(self, rule: str) -> int:
        with self._translated(f"count the dead letters of rule {rule!r}"):
            return await self._opened.read(partial(deliveries.count_dead_letters, rule=rule), listing=True)

    async def delete_dead_letter(self, letter_id: str) -> bool:
        with self._translated(f"drop dead letter {letter_id}"):
            return await self._opened.write(partial(deliveries.delete_dead_letter, letter_id=letter_id)) > 0

    # plumbing ---------------------------------------------------------------------------------

    @property
    def _opened(self) -> Runner:
        if self._runner is None:
            raise StoreError(f"store {self!r} is not open; call open() first")
        return self._runner

    async def _count(self, query: Select[Any]) -> int:
        return int(await self._opened.read(partial(operations.scalar, query=query), listing=True) or 0)

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn database and driver failures into StoreError naming the operation and database."""
        try:
            yield
        except self._errors as exc:
            raise StoreError(f"could not {what} in {self!r}: {_describe(exc)}; "
                             "check that the database is reachable and writable") from exc


# --------------------------------------------------------------------------- helpers


# What pg_direct.ACCEPT writes; an acceptance with any other field set (a cursor, a replay or
# redrive claim, derived-trigger work, a field added later) takes operations.accept instead.
_PLAIN_FIELDS = frozenset({"event", "invocations", "activations", "matched_rules", "filtered_rules"})
_OTHER_FIELDS = tuple(f.name for f in dataclasses.fields(Acceptance) if f.name not in _PLAIN_FIELDS)


def _plain(acceptance: Acceptance) -> bool:
    """A fire or invoke with its records and filter counts, and nothing else (every other field
    empty: None, False or an empty sequence)."""
    return not any(getattr(acceptance, name) for name in _OTHER_FIELDS)


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
