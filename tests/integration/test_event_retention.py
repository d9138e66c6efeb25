"""Event log retention on real SQLite and PostgreSQL, with an injected clock: pruning deletes exactly
the events out of bounds (too old, beyond the newest N of a trigger, beyond the newest N in all)
and the replay marks of pruned events; the background pruner runs on the clock's schedule."""

from __future__ import annotations

import asyncio

from tests.plugins.clock import TestClock
from tests.plugins.waiting import wait_until
from triggerhub.config import EventLogConfig
from triggerhub.engine.retention import EventPruner
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.store.base import Acceptance, Pruned, ReplayClaim

NOW_S = 1_700_000_000
NOW_MS = NOW_S * 1000
HOUR_MS = 3_600_000
A = FullyQualifiedName("guest", "a")
B = FullyQualifiedName("other", "b")


def event(event_id: str, trigger: FullyQualifiedName, time_ms: int) -> TriggerEvent:
    return TriggerEvent(event_id, "test", "test.event", trigger, {"n": event_id}, time_ms=time_ms)


async def stored_ids(store) -> set[str]:
    found = []
    for trigger in (A, B):
        found += await store.list_events(str(trigger), since_ms=0, upto_ms=NOW_MS * 2, limit=1000)
    return {e.id for e in found}


def replay_claim(found: TriggerEvent) -> Acceptance:
    return Acceptance(replay=ReplayClaim("guest/r", found.id, found.time_ms, f"act-{found.id}"))


async def test_pruning_deletes_exactly_what_is_out_of_bounds_and_the_marks_of_pruned_events(store):
    events = [event("a-old-1", A, NOW_MS - 2 * HOUR_MS), event("a-old-2", A, NOW_MS - HOUR_MS - 1),
              event("a-edge", A, NOW_MS - HOUR_MS)]  # exactly at the bound: kept by age
    events += [event(f"a-{i}", A, NOW_MS - 60_000 * i) for i in range(1, 7)]
    events += [event(f"b-{i}", B, NOW_MS - 30_000 * i) for i in range(1, 5)]
    events += [event("b-tie-x", B, NOW_MS - 150_000), event("b-tie-y", B, NOW_MS - 150_000)]
    for item in events:
        assert await store.accept(Acceptance(event=item))
    for marked in ("a-old-1", "a-3"):
        assert await store.accept(replay_claim(next(e for e in events if e.id == marked)))

    config = EventLogConfig(retention_s=3600, max_per_trigger=5, max_total=9, prune_batch=2)
    pruned = await EventPruner(store, config, clock=TestClock(NOW_S)).prune_once()

    # By age: a-old-1, a-old-2. Per trigger (newest 5): A keeps a-1..a-5 (a-6, a-edge go);
    # B keeps b-1..b-4 and b-tie-y (the id breaks the tie; b-tie-x goes). In all (newest 9 of
    # the 10 left): a-5 at -300 s is the oldest.
    assert pruned == Pruned(by_age=2, by_trigger_bound=3, by_total_bound=1, replay_marks=1)
    assert await stored_ids(store) == {"a-1", "a-2", "a-3", "a-4", "b-1", "b-2", "b-3", "b-4", "b-tie-y"}
    assert await store.count_events() == 9
    assert await EventPruner(store, config, clock=TestClock(NOW_S)).prune_once() == Pruned()
    # The pruned event's mark went with it; the kept one's still refuses an unforced replay.
    assert await store.accept(replay_claim(events[0]))
    assert not await store.accept(replay_claim(next(e for e in events if e.id == "a-3")))


async def test_zero_turns_a_bound_off(store):
    for i in range(4):
        assert await store.accept(Acceptance(event=event(f"a-{i}", A, NOW_MS - 10 * HOUR_MS * i)))
    config = EventLogConfig(retention_s=0, max_per_trigger=0, max_total=0)
    assert await EventPruner(store, config, clock=TestClock(NOW_S)).prune_once() == Pruned()
    assert await store.count_events(str(A)) == 4


async def test_the_background_pruner_runs_every_interval_on_the_clock(store):
    clock = TestClock(NOW_S)
    config = EventLogConfig(retention_s=3600, prune_interval_s=60)
    assert await store.accept(Acceptance(event=event("old", A, NOW_MS - 2 * HOUR_MS)))
    assert await store.accept(Acceptance(event=event("young", A, NOW_MS - HOUR_MS + 30_000)))
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(EventPruner(store, config, clock=clock).run_until(stop))
        await wait_until(lambda: clock.sleeping == 1, timeout_s=10)
        assert await stored_ids(store) == {"young"}
        await clock.advance(30)  # "young" is now exactly one hour old: kept, and no round ran yet
        assert await stored_ids(store) == {"young"}
        await clock.advance(30)  # the next round, 60 s after the first: "young" is past the bound
        await wait_until(lambda: clock.sleeping == 1, timeout_s=10)
        await wait_until_pruned(store)
        stop.set()


async def wait_until_pruned(store) -> None:
    async with asyncio.timeout(10):
        while await store.count_events() != 0:
            await asyncio.sleep(0.01)
