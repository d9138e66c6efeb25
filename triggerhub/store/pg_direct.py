"""PostgreSQL's hot statements on asyncpg directly, without SQLAlchemy per call.

The reads every event and invocation takes (an entity, activations, a subject, the entity
generation) and the write every invocation ends with (its record). Through SQLAlchemy's asyncpg
adapter each costs BEGIN, the statement and COMMIT or ROLLBACK (three round trips) plus the
adapter's greenlet hops; here it is one statement, one round trip on a pooled connection, and
asyncpg prepares each statement once per connection. The same effects and answers as
`statements.py` and `operations.complete`. Other writes keep the SQLAlchemy Core operations
(operations.py).

Activations are read and recorded in batches (SqlStore shares one call among concurrent
callers): a batch's rows travel as arrays, unnested by the server, so a batch of any size is
one statement whose text never changes (prepared once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

SELECT_ENTITY = "SELECT collection, revision, doc FROM entities WHERE path = $1 AND name = $2"
SELECT_ACTIVATIONS = "SELECT activation_id, namespace, doc FROM activations WHERE activation_id = ANY($1::text[])"
# One statement, so one transaction: the records whose id is new, and their pending rows dropped.
# A data-modifying WITH sees the rows the other inserted through RETURNING only.
COMPLETE = """
WITH inserted AS (
    INSERT INTO activations (activation_id, namespace, name, start_ms, doc, event_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])
    ON CONFLICT (activation_id) DO NOTHING
    RETURNING activation_id
), dropped AS (
    DELETE FROM pending WHERE activation_id IN (SELECT activation_id FROM inserted)
)
SELECT activation_id FROM inserted"""
# An accept of fires and invokes (no cursors, replay marks or derived steps; event ids unique in
# the batch), in one statement: the events whose id is new, and the invocations, records (a
# trigger's own) and filter counts of those or of no event (invokes); counts in rule order, so
# that two writers lock rows alike.
ACCEPT = """
WITH fresh AS (
    INSERT INTO events (id, trigger_fqn, time_ms, doc)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), queued AS (
    INSERT INTO pending (activation_id, accepted_ms, doc)
    SELECT p.activation_id, p.accepted_ms, p.doc
    FROM unnest($5::text[], $6::bigint[], $7::text[], $8::text[]) AS p(activation_id, accepted_ms, doc, event_id)
    WHERE p.event_id IS NULL OR p.event_id IN (SELECT id FROM fresh)
), counted AS (
    INSERT INTO rule_counts (rule, matched, filtered)
    SELECT c.rule, sum(c.matched), sum(c.filtered)
    FROM unnest($9::text[], $10::bigint[], $11::bigint[], $12::text[]) AS c(rule, matched, filtered, event_id)
    WHERE c.event_id IS NULL OR c.event_id IN (SELECT id FROM fresh)
    GROUP BY c.rule ORDER BY c.rule
    ON CONFLICT (rule) DO UPDATE SET matched = rule_counts.matched + excluded.matched,
                                     filtered = rule_counts.filtered + excluded.filtered
), recorded AS (
    INSERT INTO activations (activation_id, namespace, name, start_ms, doc, event_id)
    SELECT r.activation_id, r.namespace, r.name, r.start_ms, r.doc, r.event_id
    FROM unnest($13::text[], $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[], $19::text[])
        AS r(activation_id, namespace, name, start_ms, doc, event_id, accepted_event)
    WHERE r.accepted_event IS NULL OR r.accepted_event IN (SELECT id FROM fresh)
)
SELECT id FROM fresh"""
EVENT_COLUMNS = ("id", "trigger_fqn", "time_ms", "doc")
PENDING_COLUMNS = ("activation_id", "accepted_ms", "doc", "event_id")
COUNT_COLUMNS = ("rule", "matched", "filtered", "event_id")
ACTIVATION_COLUMNS = ("activation_id", "namespace", "name", "start_ms", "doc", "event_id")
RECORD_COLUMNS = (*ACTIVATION_COLUMNS, "accepted_event")
SELECT_SUBJECT = "SELECT doc FROM subjects WHERE uuid = $1"
SELECT_ENTITY_GENERATION = "SELECT generation FROM entity_generation WHERE id = 1"

POOL_MAX_SIZE = 10
COMMAND_TIMEOUT_S = 30.0
# What a read may raise: the caller turns these into StoreError.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
                                                   TimeoutError)


class PgDirect:
    """`open()` makes the pool (one connection at first); each call borrows a connection once."""

    def __init__(self, url: URL) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=POOL_MAX_SIZE,
                                               command_timeout=COMMAND_TIMEOUT_S, reset=_keep_session)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def entity(self, path: str, name: str) -> tuple[str, int, str] | None:
        row = await self._opened().fetchrow(SELECT_ENTITY, path, name)
        return None if row is None else (row[0], row[1], row[2])

    async def activation_docs(self, keys: Sequence[tuple[str, str]]) -> list[str | None]:
        """The stored record of each (namespace, activation id), in order; None where there is none."""
        rows = await self._opened().fetch(SELECT_ACTIVATIONS, list({activation_id for _, activation_id in keys}))
        found = {(row[1], row[0]): row[2] for row in rows}
        return [found.get(key) for key in keys]

    async def accept(self, events: Sequence[dict[str, Any]], pending: Sequence[dict[str, Any]],
                     counts: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> set[str]:
        """Rows as `ACCEPT` names them (pending and count rows' `event_id`, records'
        `accepted_event`: the acceptance's event, None for an invoke); returns the event ids inserted."""
        arrays = [_columns(events, EVENT_COLUMNS), _columns(pending, PENDING_COLUMNS), _columns(counts, COUNT_COLUMNS),
                  _columns(records, RECORD_COLUMNS)]
        return {row[0] for row in await self._opened().fetch(ACCEPT, *(a for group in arrays for a in group))}

    async def complete(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert the activation rows (statements.activation_row; ids unique) whose id is not
        recorded yet, and drop their pending rows; returns the ids inserted."""
        return {row[0] for row in await self._opened().fetch(COMPLETE, *_columns(rows, ACTIVATION_COLUMNS))}

    async def subject_doc(self, uuid: str) -> str | None:
        doc: str | None = await self._value(SELECT_SUBJECT, uuid)
        return doc

    async def entity_generation(self) -> int:
        return int(await self._value(SELECT_ENTITY_GENERATION) or 0)

    async def _value(self, query: str, *args: Any) -> Any:
        return await self._opened().fetchval(query, *args)

    def _opened(self) -> asyncpg.Pool:
        if self._pool is None:
            raise asyncpg.InterfaceError("the PostgreSQL read pool is not open; call SqlStore.open() first")
        return self._pool


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    """Rows as one array per column, the form `unnest` takes."""
    return [[row[name] for row in rows] for name in names]


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset between borrowers, which by default costs a round trip (RESET ALL, UNLISTEN,
    advisory unlocks): these single-statement reads change no session state, so there is nothing
    to reset."""
