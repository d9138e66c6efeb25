"""SQLite's hot statements on the driver's own sqlite3 connection, without SQLAlchemy per call.

The same operations as `operations.accept`/`complete` and the same key reads as `statements.py`,
with the same answers, for the paths every event and invocation takes: through SQLAlchemy a
primary-key read costs several times what sqlite3 needs (bench/store_bench.py). sqlite3 caches
the prepared statements per connection. PostgreSQL keeps the SQLAlchemy Core operations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection

from triggerhub.model import Activation, now_ms
from triggerhub.store import deliveries, operations, replays, statements
from triggerhub.store.base import Acceptance

INSERT_EVENT = ("INSERT INTO events (id, trigger_fqn, time_ms, doc) VALUES (:id, :trigger_fqn, :time_ms, :doc) "
                "ON CONFLICT (id) DO NOTHING")
INSERT_PENDING = "INSERT INTO pending (activation_id, accepted_ms, doc) VALUES (:activation_id, :accepted_ms, :doc)"
INSERT_ACTIVATION = ("INSERT INTO activations (activation_id, namespace, name, start_ms, doc, event_id) "
                     "VALUES (:activation_id, :namespace, :name, :start_ms, :doc, :event_id)")
INSERT_NEW_ACTIVATION = INSERT_ACTIVATION + " ON CONFLICT (activation_id) DO NOTHING"
DELETE_PENDING = "DELETE FROM pending WHERE activation_id = ?"
ADD_RULE_COUNTS = ("INSERT INTO rule_counts (rule, matched, filtered) VALUES (:rule, :matched, :filtered) "
                   "ON CONFLICT (rule) DO UPDATE SET matched = rule_counts.matched + excluded.matched, "
                   "filtered = rule_counts.filtered + excluded.filtered")
UPSERT_CURSOR = ("INSERT INTO cursors (feed_id, value, updated_ms) VALUES (:feed_id, :value, :updated_ms) "
                 "ON CONFLICT (feed_id) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms")
SELECT_ENTITY = "SELECT collection, revision, doc FROM entities WHERE path = ? AND name = ?"
SELECT_ACTIVATION = "SELECT doc FROM activations WHERE activation_id = ? AND namespace = ?"
SELECT_SUBJECT = "SELECT doc FROM subjects WHERE uuid = ?"
SELECT_ENTITY_GENERATION = "SELECT generation FROM entity_generation WHERE id = 1"
SELECT_FEED = "SELECT doc FROM feeds WHERE trigger_fqn = ?"


def accept(conn: Connection, batch: Sequence[Acceptance]) -> list[bool]:
    """As `operations.accept`: writes each acceptance whose event id is new (the first in the
    batch wins) with its pending invocations, records, cursor and rule counts; answers whether
    each was written."""
    db = _sqlite(conn)
    answers = []
    for acceptance in batch:
        if acceptance.event is None:
            answers.append(True)
        else:
            answers.append(db.execute(INSERT_EVENT, statements.event_row(acceptance.event, acceptance.decisions)).rowcount == 1)
    answers = replays.claim(conn, batch, answers)
    answers = deliveries.claim_letters(conn, batch, answers)
    taken = [a for a, accepted in zip(batch, answers) if accepted]
    pending_rows = [statements.pending_row(i) for a in taken for i in a.invocations]
    activation_rows = [statements.activation_row(r) for a in taken for r in a.activations]
    if pending_rows:
        db.executemany(INSERT_PENDING, pending_rows)
    if activation_rows:
        db.executemany(INSERT_ACTIVATION, activation_rows)
    cursor_rows = [{"feed_id": a.cursor[0], "value": a.cursor[1], "updated_ms": now_ms()}
                   for a in taken if a.cursor is not None]
    if cursor_rows:  # in order, so the last value accepted wins
        db.executemany(UPSERT_CURSOR, cursor_rows)
    count_rows = operations.rule_count_rows(taken)
    if count_rows:
        db.executemany(ADD_RULE_COUNTS, count_rows)
    operations.accept_derived(conn, batch, answers, lock=False)
    return answers


def complete(conn: Connection, batch: Sequence[Activation]) -> set[str]:
    """As `operations.complete`: inserts each record whose id is not recorded yet (the first in
    the batch wins) and drops its pending row; returns the ids inserted."""
    db = _sqlite(conn)
    inserted: set[str] = set()
    for activation in batch:
        if db.execute(INSERT_NEW_ACTIVATION, statements.activation_row(activation)).rowcount == 1:
            inserted.add(activation.activation_id)
            db.execute(DELETE_PENDING, (activation.activation_id,))
    return inserted


def select_entity(conn: Connection, path: str, name: str) -> tuple[str, int, str] | None:
    """(collection, revision, doc) of the entity, or None."""
    return cast("tuple[str, int, str] | None", _sqlite(conn).execute(SELECT_ENTITY, (path, name)).fetchone())


def select_entity_generation(conn: Connection) -> int:
    row = _sqlite(conn).execute(SELECT_ENTITY_GENERATION).fetchone()
    return 0 if row is None else int(row[0])


def select_activation_doc(conn: Connection, namespace: str, activation_id: str) -> str | None:
    return _first_column(_sqlite(conn).execute(SELECT_ACTIVATION, (activation_id, namespace)).fetchone())


def select_feed_doc(conn: Connection, trigger: str) -> str | None:
    """The feed registration of `trigger`: every webhook delivery reads it."""
    return _first_column(_sqlite(conn).execute(SELECT_FEED, (trigger,)).fetchone())


def select_subject_doc(conn: Connection, uuid: str) -> str | None:
    return _first_column(_sqlite(conn).execute(SELECT_SUBJECT, (uuid,)).fetchone())


def _sqlite(conn: Connection) -> sqlite3.Connection:
    return cast(sqlite3.Connection, conn.connection.dbapi_connection)


def _first_column(row: Any) -> str | None:
    return None if row is None else cast(str, row[0])
