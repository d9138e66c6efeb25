"""The trigger-event log beyond accept: windows of a trigger's events (replay) and retention.

Pruning is done in steps of at most `batch` rows, each its own transaction, so fires and
invokes keep committing between them (on SQLite every write shares one writer thread); the
scans that find a count bound's cutoff are reads, beside the writer. Order is (time_ms, id)
throughout: a count bound keeps exactly the newest N events, ties broken by id. On PostgreSQL
a deleting step first takes a transaction advisory lock and does nothing when another process
holds it: the controllers' pruning lease already lets one of them prune, and this keeps any
other caller's steps from interleaving with its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, text, tuple_

from triggerhub.store.base import Pruned
from triggerhub.store.tables import events, replays

PRUNE_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext('triggerhub event retention'))")


def window_filter(trigger: str | None, since_ms: int | None, upto_ms: int | None) -> list[Any]:
    conditions: list[Any] = []
    if trigger is not None:
        conditions.append(events.c.trigger_fqn == trigger)
    if since_ms is not None:
        conditions.append(events.c.time_ms >= since_ms)
    if upto_ms is not None:
        conditions.append(events.c.time_ms <= upto_ms)
    return conditions


def list_window(conn: Connection, trigger: str, since_ms: int, upto_ms: int, after: tuple[int, str] | None,
                limit: int) -> list[str]:
    query = select(events.c.doc).where(*window_filter(trigger, since_ms, upto_ms))
    if after is not None:
        query = query.where(tuple_(events.c.time_ms, events.c.id) > tuple_(*after))
    query = query.order_by(events.c.time_ms, events.c.id).limit(limit)
    return list(conn.execute(query).scalars())


def select_docs(conn: Connection, event_ids: Sequence[str]) -> list[str]:
    return list(conn.execute(select(events.c.doc).where(events.c.id.in_(list(event_ids)))).scalars())


Cutoff = tuple[str | None, int, str]
"""(trigger or None for all, time_ms, id): delete that trigger's events up to this key, inclusive."""


def delete_aged(conn: Connection, *, before_ms: int, batch: int, postgres: bool) -> Pruned:
    """Up to `batch` events older than `before_ms`, and every replay mark of such events."""
    if postgres and not conn.execute(PRUNE_LOCK).scalar_one():
        return Pruned()
    marks = int(conn.execute(delete(replays).where(replays.c.event_ms < before_ms)).rowcount)
    return Pruned(by_age=_delete_ids(conn, select(events.c.id).where(events.c.time_ms < before_ms)
                                     .order_by(events.c.time_ms, events.c.id).limit(batch)), replay_marks=marks)


def crowded_cutoffs(conn: Connection, *, keep: int) -> list[Cutoff]:
    """For each trigger with more than `keep` events, the newest of those beyond its newest `keep`
    (a read: it runs beside the writer, not in its transactions)."""
    crowded = list(conn.execute(select(events.c.trigger_fqn).group_by(events.c.trigger_fqn)
                                .having(func.count() > keep).order_by(events.c.trigger_fqn)).scalars())
    found: list[Cutoff] = []
    for trigger in crowded:
        cutoff = _newest_beyond(conn, [events.c.trigger_fqn == trigger], keep)
        if cutoff is not None:
            found.append((trigger, *cutoff))
    return found


def total_cutoff(conn: Connection, *, keep: int) -> list[Cutoff]:
    cutoff = _newest_beyond(conn, [], keep)
    return [] if cutoff is None else [(None, *cutoff)]


def delete_through(conn: Connection, *, cutoffs: Sequence[Cutoff], batch: int, postgres: bool) -> int:
    """Up to `batch` events at or before the cutoffs. A cutoff read earlier stays right: events
    accepted since are newer, or older than it and so beyond the bound as well."""
    if postgres and not conn.execute(PRUNE_LOCK).scalar_one():
        return 0
    deleted = 0
    for trigger, time_ms, event_id in cutoffs:
        where = [] if trigger is None else [events.c.trigger_fqn == trigger]
        older = or_(events.c.time_ms < time_ms, and_(events.c.time_ms == time_ms, events.c.id <= event_id))
        deleted += _delete_ids(conn, select(events.c.id).where(*where, older)
                               .order_by(events.c.time_ms, events.c.id).limit(batch - deleted))
        if deleted >= batch:
            break
    return deleted


def _newest_beyond(conn: Connection, where: list[Any], keep: int) -> tuple[int, str] | None:
    row = conn.execute(select(events.c.time_ms, events.c.id).where(*where)
                       .order_by(events.c.time_ms.desc(), events.c.id.desc()).offset(keep).limit(1)).first()
    return None if row is None else (int(row[0]), str(row[1]))


def _delete_ids(conn: Connection, chosen: Any) -> int:
    ids = list(conn.execute(chosen).scalars())
    if not ids:
        return 0
    return int(conn.execute(delete(events).where(events.c.id.in_(ids))).rowcount)
