"""Derived-trigger state in the store under concurrency, on SQLite and PostgreSQL: two store
connections (as two workers) accept 200 events of an `all` trigger's two sources for one key at
once; each source event is paired exactly once (no lost update of the key's state), and a
duplicate event changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from triggerhub.engine.derive import OnEvent
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.rules.correlate import SourceEvent, parse_spec
from triggerhub.store.base import Acceptance, DeriveStep
from triggerhub.store.sql import SqlStore

DERIVED = FullyQualifiedName("guest", "both")
SPEC = parse_spec({"kind": "all", "from": ["a", "b"], "key": "$.data.k", "windowS": 600}, "guest")
PAIRS = 100


def acceptance(source: str, n: int) -> Acceptance:
    trigger = FullyQualifiedName("guest", source)
    event = TriggerEvent(f"{source}{n}", "test", "test.event", trigger, {"k": "key-1"}, time_ms=1_000_000 + n)
    step = DeriveStep(str(DERIVED), "key-1", OnEvent(SPEC, DERIVED, "key-1",
                                                     SourceEvent(event.id, str(trigger), event.time_ms, event.data)))
    return Acceptance(event=event, derive=[step])


async def test_two_writers_pair_every_source_event_exactly_once(store: SqlStore, store_url: str):
    other = SqlStore(store_url)
    await other.open()
    try:
        work = [(store if n % 2 else other, acceptance(source, n)) for n in range(PAIRS) for source in ("a", "b")]
        answers = await asyncio.gather(*(writer.accept(a) for writer, a in work))
        assert answers == [True] * (2 * PAIRS)
        again = await other.accept(acceptance("a", 0))  # a redelivered event: no second step
        assert again is False
    finally:
        await other.close()
    derived = await store.list_derived_outbox(limit=10 * PAIRS)
    used = Counter(e["id"] for d in derived for e in d.data["events"])  # type: ignore[index, union-attr]
    assert len(derived) == PAIRS
    assert used == Counter({f"{s}{n}": 1 for n in range(PAIRS) for s in ("a", "b")})
    assert all(d.trigger == DERIVED and d.type == "org.triggerhub.derived.all" for d in derived)
    assert await store.get_derived_state(str(DERIVED), "key-1") is None  # nothing left waiting
    await store.delete_derived_outbox([d.id for d in derived])
    assert await store.list_derived_outbox(limit=1) == []
    assert json.loads(json.dumps(derived[0].data))["key"] == "key-1"
