"""The trigger-event log beyond accept: windows of a trigger's events (replay) and retention.

Pruning is done in steps of at most `batch` rows, each its own transaction, so fires and
invokes keep committing between them (on SQLite every write shares one writer thread). Order is
(time_ms, id) throughout: a count bound keeps exactly the newest N events, ties broken by id.
On PostgreSQL a step first takes a transaction advisory lock and does nothing when another
process holds it: with several controllers, one prunes at a time.
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


def prune(conn: Connection, *, before_ms: int, max_per_trigger: int, max_total: int, batch: int,
          postgres: bool) -> Pruned:
    """One pruning step (see the module docstring): up to `batch` rows of the first bound that
    does not hold yet, in the order age, per trigger, in all. So the count bounds are applied to
    what the bounds before them left, whatever the batch size."""
    if postgres and not conn.execute(PRUNE_LOCK).scalar_one():
        return Pruned()
    marks = int(conn.execute(delete(replays).where(replays.c.event_ms < before_ms)).rowcount) if before_ms > 0 else 0
    if before_ms > 0:
        by_age = _delete_ids(conn, select(events.c.id).where(events.c.time_ms < before_ms)
                             .order_by(events.c.time_ms, events.c.id).limit(batch))
        if by_age:
            return Pruned(by_age=by_age, replay_marks=marks)
    if max_per_trigger > 0:
        by_trigger = 0
        crowded = conn.execute(select(events.c.trigger_fqn).group_by(events.c.trigger_fqn)
                               .having(func.count() > max_per_trigger).order_by(events.c.trigger_fqn)).scalars()
        for trigger in list(crowded):
            by_trigger += _delete_beyond(conn, [events.c.trigger_fqn == trigger], max_per_trigger, batch - by_trigger)
            if by_trigger >= batch:
                break
        if by_trigger:
            return Pruned(by_trigger_bound=by_trigger, replay_marks=marks)
    by_total = _delete_beyond(conn, [], max_total, batch) if max_total > 0 else 0
    return Pruned(by_total_bound=by_total, replay_marks=marks)


def _delete_beyond(conn: Connection, where: list[Any], keep: int, batch: int) -> int:
    """Delete up to `batch` of the events matching `where` that are older than its newest `keep`."""
    newest_dropped = conn.execute(select(events.c.time_ms, events.c.id).where(*where)
                                  .order_by(events.c.time_ms.desc(), events.c.id.desc())
                                  .offset(keep).limit(1)).first()
    if newest_dropped is None:
        return 0
    time_ms, event_id = newest_dropped
    older = or_(events.c.time_ms < time_ms, and_(events.c.time_ms == time_ms, events.c.id <= event_id))
    return _delete_ids(conn, select(events.c.id).where(*where, older)
                       .order_by(events.c.time_ms, events.c.id).limit(batch))


def _delete_ids(conn: Connection, chosen: Any) -> int:
    ids = list(conn.execute(chosen).scalars())
    if not ids:
        return 0
    return int(conn.execute(delete(events).where(events.c.id.in_(ids))).rowcount)
