"""The database work of each Store operation, as synchronous functions of one Connection.

Each function is one operation's statements, written once for both dialects: `runners.py` runs it
inside one transaction, inline on a sqlite3 connection or through asyncpg via `run_sync`. They
touch nothing but the connection, so a runner may roll one back and run it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Executable, delete

from triggerhub.errors import RevisionConflict
from triggerhub.model import Activation, Collection, Entity, collection_of, now_ms
from triggerhub.store import deliveries, derived, replays, statements
from triggerhub.store.base import Acceptance
from triggerhub.store.statements import Statements
from triggerhub.store.tables import activations, pending, rule_counts


def execute(conn: Connection, statement: Executable, params: Any = None) -> None:
    conn.execute(statement, params)


def execute_counted(conn: Connection, statement: Executable, params: Any = None) -> int:
    """Execute and return the number of rows it changed."""
    return int(conn.execute(statement, params).rowcount)


def scalar(conn: Connection, query: Executable, params: dict[str, Any] | None = None) -> Any:
    return conn.execute(query, params).scalar_one_or_none()


def scalars(conn: Connection, query: Executable) -> list[Any]:
    return list(conn.execute(query).scalars())


def first(conn: Connection, query: Executable, params: dict[str, Any]) -> Any:
    return conn.execute(query, params).first()


def put_subject(conn: Connection, sql: Statements, row: dict[str, Any]) -> None:
    """Creates or replaces a subject and counts the write in the entity generation, so that a
    hub revalidating its credential cache against it sees the change on its next request."""
    conn.execute(sql.bump_entity_generation)
    conn.execute(sql.upsert_subject, row)


def delete_subject(conn: Connection, sql: Statements, uuid: str) -> int:
    """As put_subject, for a delete: the number of subjects deleted."""
    conn.execute(sql.bump_entity_generation)
    return conn.execute(sql.delete_subject, {"uuid": uuid}).rowcount


def put_entities(conn: Connection, sql: Statements, puts: Sequence[Entity], written: Sequence[Entity],
                 deletes: Sequence[Entity]) -> None:
    """Writes `written` over `puts` (same order) and drops `deletes`, each at its stored revision,
    and counts the write in the entity generation (readers' caches revalidate against it)."""
    conn.execute(sql.bump_entity_generation)
    for old, new in zip(puts, written, strict=True):
        if old.revision == 0:
            result = conn.execute(sql.insert_entity, statements.entity_row(new))
        else:
            result = conn.execute(sql.update_entity, statements.entity_update(old, new))
        if result.rowcount != 1:
            raise _conflict(conn, sql, old, "write")
    for entity in deletes:
        result = conn.execute(sql.delete_entity, {
            "path": entity.namespace, "name": entity.name,
            "collection": collection_of(entity).value, "revision": entity.revision})
        if result.rowcount != 1:
            raise _conflict(conn, sql, entity, "delete")
    deleted_rules = [f"{e.namespace}/{e.name}" for e in deletes if collection_of(e) is Collection.RULES]
    if deleted_rules:  # a rule created again under the same name counts afresh
        conn.execute(delete(rule_counts).where(rule_counts.c.rule.in_(deleted_rules)))
        for rule in deleted_rules:  # and keeps neither waiting retries nor dead letters
            deliveries.delete_rule_deliveries(conn, rule)


def _conflict(conn: Connection, sql: Statements, entity: Entity, verb: str) -> RevisionConflict:
    """Explain a refused write; the refusal itself came from the conditional statement."""
    collection = collection_of(entity).value
    where = f"{collection} '{entity.namespace}/{entity.name}'"
    row = first(conn, sql.select_entity, {"path": entity.namespace, "name": entity.name})
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


def accept(conn: Connection, sql: Statements, batch: Sequence[Acceptance]) -> list[bool]:
    """Writes every acceptance whose event id is new (first one wins within the batch); answers
    whether each was written."""
    event_rows = {a.event.id: statements.event_row(a.event, a.decisions) for a in reversed(batch) if a.event is not None}
    fresh: set[str] = set()
    if event_rows:
        fresh = set(conn.execute(sql.insert_events, list(event_rows.values())).scalars())
    answers = []
    for acceptance in batch:
        answers.append(acceptance.event is None or acceptance.event.id in fresh)
        if acceptance.event is not None:
            fresh.discard(acceptance.event.id)
    answers = replays.claim(conn, batch, answers)
    answers = deliveries.claim_letters(conn, batch, answers)
    taken = [a for a, accepted in zip(batch, answers) if accepted]
    pending_rows = [statements.pending_row(i) for a in taken for i in a.invocations]
    activation_rows = [statements.activation_row(r) for a in taken for r in a.activations]
    # One row per feed, the last value accepted wins (one statement may not touch a row twice).
    cursor_rows = {a.cursor[0]: {"feed_id": a.cursor[0], "value": a.cursor[1], "updated_ms": now_ms()}
                   for a in taken if a.cursor is not None}
    if pending_rows:
        conn.execute(pending.insert(), pending_rows)
    if activation_rows:
        conn.execute(activations.insert(), activation_rows)
    if cursor_rows:
        conn.execute(sql.upsert_cursor, list(cursor_rows.values()))
    count_rows = rule_count_rows(taken)
    if count_rows:
        conn.execute(sql.add_rule_counts, count_rows)
    accept_derived(conn, batch, answers, lock=True)
    return answers


def accept_derived(conn: Connection, batch: Sequence[Acceptance], answers: Sequence[bool], *, lock: bool) -> None:
    """The derived-trigger part of an accept: steps of new events only; a derived event's outbox
    row goes whether it was new or a duplicate (delivered before by another process)."""
    steps = [step for a, accepted in zip(batch, answers) if accepted for step in a.derive]
    if steps:
        derived.apply_steps(conn, steps, lock=lock)
    delivered = [a.event.id for a in batch if a.from_outbox and a.event is not None]
    derived.delete_outbox(conn, delivered)


def rule_count_rows(taken: Sequence[Acceptance]) -> list[dict[str, Any]]:
    """One row per rule (a statement may not touch a row twice), in key order so that two
    concurrent transactions lock rows in the same order."""
    counts: dict[str, list[int]] = {}
    for acceptance in taken:
        for rule in acceptance.matched_rules:
            counts.setdefault(rule, [0, 0])[0] += 1
        for rule in acceptance.filtered_rules:
            counts.setdefault(rule, [0, 0])[1] += 1
    return [{"rule": rule, "matched": matched, "filtered": filtered}
            for rule, (matched, filtered) in sorted(counts.items())]


def complete(conn: Connection, sql: Statements, batch: Sequence[Activation]) -> set[str]:
    """Inserts each record whose id is not recorded yet (the first in the batch wins) and drops
    its pending row; returns the ids inserted."""
    rows = {a.activation_id: statements.activation_row(a) for a in reversed(batch)}
    inserted = set(conn.execute(sql.insert_activations, list(rows.values())).scalars())
    if inserted:
        conn.execute(sql.delete_pending, {"ids": sorted(inserted)})
    return inserted
