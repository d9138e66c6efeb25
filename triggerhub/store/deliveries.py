"""The database work of waiting retries and dead letters (issue 14), one function per operation
over one Connection, for both dialects; `sql.py` runs each as one transaction.

Claims are settled by a conditional UPDATE (a row whose lease ended, taken with RETURNING), never
by reading first, so two processes polling together never start the same retry twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dataclasses import replace

from sqlalchemy import Connection, case, delete, exists, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from triggerhub.model import DeadLetter, Invocation
from triggerhub.store import codec, statements
from triggerhub.store.base import Acceptance
from triggerhub.store.tables import activations, dead_letters, pending, retries


def _insert(dialect: str) -> Any:
    return sqlite.insert if dialect == "sqlite" else postgresql.insert


def put_retry(conn: Connection, dialect: str, invocation: Invocation, rule: str, due_ms: int) -> bool:
    """Keep the next attempt, due at `due_ms`; False when it is kept already (same activation id)."""
    row = {"activation_id": invocation.activation_id, "rule": rule, "due_ms": due_ms, "lease_owner": "",
           "lease_until_ms": 0, "doc": codec.dumps(codec.invocation_to_doc(invocation))}
    result = conn.execute(_insert(dialect)(retries).on_conflict_do_nothing(index_elements=["activation_id"]), row)
    return int(result.rowcount) == 1


def claim_retries(conn: Connection, now_ms: int, owner: str, lease_ms: int, limit: int) -> list[Invocation]:
    """Lease up to `limit` due retries whose lease (if any) has ended; returns their invocations."""
    due = (select(retries.c.activation_id).where(retries.c.due_ms <= now_ms, retries.c.lease_until_ms <= now_ms)
           .order_by(retries.c.due_ms, retries.c.activation_id).limit(limit))
    claimed = conn.execute(
        update(retries).where(retries.c.activation_id.in_(due.scalar_subquery()), retries.c.lease_until_ms <= now_ms)
        .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms).returning(retries.c.doc))
    return [codec.invocation_from_doc(codec.loads(doc)) for doc in claimed.scalars()]


def prepare_retry(conn: Connection, invocation: Invocation) -> bool:
    """Make the attempt pending unless it is already (a start that died before handing it over)
    or has its record; False when it has its record (nothing is left to run)."""
    is_recorded = select(exists().where(activations.c.activation_id == invocation.activation_id))
    if conn.execute(is_recorded).scalar():
        return False
    waiting = conn.execute(select(exists().where(pending.c.activation_id == invocation.activation_id))).scalar()
    if not waiting:
        conn.execute(pending.insert(), statements.pending_row(invocation))
        # PostgreSQL (read committed): a record committed after the first read, together with
        # the drop of the pending row the dead claimer made, is seen here; without this the row
        # just inserted would wait beside its record (an invoker drops such a row too).
        if conn.execute(is_recorded).scalar():
            conn.execute(delete(pending).where(pending.c.activation_id == invocation.activation_id))
            return False
    return True


def delete_pending(conn: Connection, activation_id: str) -> int:
    return int(conn.execute(delete(pending).where(pending.c.activation_id == activation_id)).rowcount)


def delete_retry(conn: Connection, activation_id: str, owner: str) -> int:
    return int(conn.execute(delete(retries).where(retries.c.activation_id == activation_id,
                                                  retries.c.lease_owner == owner)).rowcount)


def next_due_ms(conn: Connection) -> int | None:
    """When the next retry can be claimed: its due time, or the end of its lease when it is leased
    longer (a claimer that died leaves its rows leased until then)."""
    claimable_ms = case((retries.c.lease_until_ms > retries.c.due_ms, retries.c.lease_until_ms), else_=retries.c.due_ms)
    value = conn.execute(select(func.min(claimable_ms))).scalar()
    return None if value is None else int(value)


def count_retries(conn: Connection, rule: str | None) -> int:
    query = select(func.count()).select_from(retries)
    if rule is not None:
        query = query.where(retries.c.rule == rule)
    return int(conn.execute(query).scalar() or 0)


def put_dead_letter(conn: Connection, dialect: str, letter: DeadLetter) -> None:
    """Keep `letter`, replacing the one of the same (rule, event) (a redrive that failed again)."""
    statement = _insert(dialect)(dead_letters)
    statement = statement.on_conflict_do_update(index_elements=["id"], set_={"doc": statement.excluded.doc,
                                                                            "redriven_by": None})
    conn.execute(statement, {"id": letter.id, "rule": letter.rule, "created_ms": letter.created_ms,
                             "doc": codec.dumps(codec.dead_letter_to_doc(letter)), "redriven_by": None})


CLAIM_LETTER = text("UPDATE dead_letters SET redriven_by = :activation_id WHERE id = :id AND redriven_by IS NULL")


def claim_letters(conn: Connection, batch: Sequence[Acceptance], answers: list[bool]) -> list[bool]:
    """`answers` with every redrive whose letter is being redriven already (or is gone) turned
    False; called by both accept operations, like replays.claim."""
    out = []
    for acceptance, accepted in zip(batch, answers, strict=True):
        claim = acceptance.redrive
        if claim is None or not accepted:
            out.append(accepted)
            continue
        taken = conn.execute(CLAIM_LETTER, {"id": claim.letter_id, "activation_id": claim.activation_id})
        out.append(int(taken.rowcount) == 1)
    return out


def list_dead_letters(conn: Connection, rule: str, ids: Sequence[str] | None, skip: int, limit: int) -> list[DeadLetter]:
    """Oldest first."""
    query = select(dead_letters.c.doc, dead_letters.c.redriven_by).where(dead_letters.c.rule == rule)
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(list(ids)))
    query = query.order_by(dead_letters.c.created_ms, dead_letters.c.id).offset(skip).limit(limit)
    return [replace(codec.dead_letter_from_doc(codec.loads(doc)), redriven_by=redriven_by)
            for doc, redriven_by in conn.execute(query)]


def count_dead_letters(conn: Connection, rule: str) -> int:
    query = select(func.count()).select_from(dead_letters).where(dead_letters.c.rule == rule)
    return int(conn.execute(query).scalar() or 0)


def delete_dead_letter(conn: Connection, letter_id: str) -> int:
    return int(conn.execute(delete(dead_letters).where(dead_letters.c.id == letter_id)).rowcount)


def delete_rule_deliveries(conn: Connection, rule: str) -> None:
    """A deleted rule keeps no waiting retries and no dead letters."""
    conn.execute(delete(retries).where(retries.c.rule == rule))
    conn.execute(delete(dead_letters).where(dead_letters.c.rule == rule))
