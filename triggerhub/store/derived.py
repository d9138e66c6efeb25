"""The database work of derived triggers: keyed state, due times and the outbox, per Connection.

`apply_steps` runs inside the transaction that accepts the events causing the steps (or alone,
for due keys): it reads each key's state, runs the step's pure transition and writes the new
state and the derived events in the same transaction. On PostgreSQL the key's row is created
first and then locked (`FOR UPDATE`), so two workers changing one key take turns; SQLite has a
single writer. Steps are applied ordered by (trigger, key), keeping each key's own order, so
concurrent transactions lock rows in the same order. On PostgreSQL a transaction that wrote a
derived event to the outbox, or armed a deadline earlier than its key had, ends with a NOTIFY on
`NOTICE_CHANNEL` (store/notify.py), delivered at its commit to the workers' derive loops; re-arming
a key later (every heartbeat of a live device) notifies nobody.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, text

from triggerhub.model import TriggerEvent, now_ms
from triggerhub.store import codec
from triggerhub.store.base import DeriveStep

# Plain SQL with :named parameters, which both sqlite3 and SQLAlchemy's text() take.
ENSURE_ROW = ("INSERT INTO derive_state (trigger_fqn, key, state, due_ms) VALUES (:t, :k, '', NULL) "
              "ON CONFLICT (trigger_fqn, key) DO NOTHING")
READ_STATE = "SELECT state FROM derive_state WHERE trigger_fqn = :t AND key = :k"
LOCK_STATE = "SELECT state, due_ms FROM derive_state WHERE trigger_fqn = :t AND key = :k FOR UPDATE"
NOTICE_CHANNEL = "triggerhub_derive"
NOTIFY = text(f"SELECT pg_notify('{NOTICE_CHANNEL}', :due)")
NOW_DUE_MS = 0
"""A notice's payload when an event waits in the outbox: look now."""
UPSERT_STATE = ("INSERT INTO derive_state (trigger_fqn, key, state, due_ms) VALUES (:t, :k, :s, :d) "
                "ON CONFLICT (trigger_fqn, key) DO UPDATE SET state = excluded.state, due_ms = excluded.due_ms")
DELETE_STATE = "DELETE FROM derive_state WHERE trigger_fqn = :t AND key = :k"
INSERT_OUTBOX = ("INSERT INTO derive_outbox (event_id, trigger_fqn, created_ms, doc) VALUES (:id, :t, :c, :doc) "
                 "ON CONFLICT (event_id) DO NOTHING")
DELETE_OUTBOX = "DELETE FROM derive_outbox WHERE event_id = :id"
SELECT_DUE = text("SELECT trigger_fqn, key FROM derive_state WHERE due_ms IS NOT NULL AND due_ms <= :now "
                  "ORDER BY due_ms, trigger_fqn, key LIMIT :limit")
SELECT_NEXT_DUE = text("SELECT MIN(due_ms) FROM derive_state")
SELECT_OUTBOX = text("SELECT doc FROM derive_outbox ORDER BY created_ms, event_id LIMIT :limit")
SELECT_ONE = text("SELECT state, due_ms FROM derive_state WHERE trigger_fqn = :t AND key = :k")


Run = Callable[[str, dict[str, Any]], Any]  # one statement; the first column of its first row, or None


def apply_steps(conn: Connection, steps: Sequence[DeriveStep], *, lock: bool) -> int:
    """Apply each step; returns how many derived events went into the outbox. `lock`: PostgreSQL
    (create the row, then lock it); without it, SQLite through its own driver (one writer)."""
    run = _on_postgres(conn) if lock else _on_sqlite(conn)
    emitted = 0
    earliest_ms: int | None = None  # the earliest deadline armed before its key's former one
    for step in sorted(steps, key=lambda s: (s.trigger, s.key)):  # stable: a key's steps keep their order
        names = {"t": step.trigger, "k": step.key}
        due_before_ms: int | None = None
        if lock:
            run(ENSURE_ROW, names)
            row = conn.execute(text(LOCK_STATE), names).one()
            stored, due_before_ms = row[0], row[1]
        else:
            stored = run(READ_STATE, names)
        change = step.transition(stored or None)
        if change.state is None:
            run(DELETE_STATE, names)
        else:
            run(UPSERT_STATE, {**names, "s": change.state, "d": change.due_ms})
            if change.due_ms is not None and (due_before_ms is None or change.due_ms < due_before_ms):
                earliest_ms = change.due_ms if earliest_ms is None else min(earliest_ms, change.due_ms)
        for event in change.events:
            run(INSERT_OUTBOX, outbox_row(event))
            emitted += 1
    if lock and (emitted or earliest_ms is not None):
        conn.execute(NOTIFY, {"due": str(NOW_DUE_MS if emitted else earliest_ms)})
    return emitted


def _on_sqlite(conn: Connection) -> Run:
    # sqlite3 directly (see direct.py): SQLAlchemy's per-statement cost would dominate here.
    db = cast(sqlite3.Connection, conn.connection.dbapi_connection)

    def run(sql: str, params: dict[str, Any]) -> Any:
        row = db.execute(sql, params).fetchone()
        return None if row is None else row[0]
    return run


def _on_postgres(conn: Connection) -> Run:
    def run(sql: str, params: dict[str, Any]) -> Any:
        result = conn.execute(text(sql), params)
        return result.scalar_one_or_none() if result.returns_rows else None
    return run


def outbox_row(event: TriggerEvent) -> dict[str, Any]:
    return {"id": event.id, "t": str(event.trigger), "c": now_ms(), "doc": codec.dumps(codec.event_to_doc(event))}


def delete_outbox(conn: Connection, event_ids: Sequence[str]) -> None:
    if event_ids:
        conn.execute(text(DELETE_OUTBOX), [{"id": event_id} for event_id in event_ids])


def list_due(conn: Connection, now_ms: int, limit: int) -> list[tuple[str, str]]:
    return [(str(row[0]), str(row[1])) for row in conn.execute(SELECT_DUE, {"now": now_ms, "limit": limit})]


def next_due(conn: Connection) -> int | None:
    value = conn.execute(SELECT_NEXT_DUE).scalar_one_or_none()
    return None if value is None else int(value)


def list_outbox(conn: Connection, limit: int) -> list[TriggerEvent]:
    return [codec.event_from_doc(codec.loads(doc)) for doc in conn.execute(SELECT_OUTBOX, {"limit": limit}).scalars()]


def get_state(conn: Connection, trigger: str, key: str) -> tuple[str, int | None] | None:
    row = conn.execute(SELECT_ONE, {"t": trigger, "k": key}).first()
    return None if row is None else (str(row[0]), None if row[1] is None else int(row[1]))
