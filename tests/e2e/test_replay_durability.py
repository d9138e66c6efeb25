"""kill -9 of the hub right after a replay was answered: after a restart every replayed run ends in
exactly one record, and replaying the window again runs nothing (the marks were committed with
the runs)."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import aiohttp

from tests.e2e.test_durability import _call, pending_rows
from tests.plugins.waiting import wait_quiet
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

SLOW = "import time\ndef main(args):\n    time.sleep(0.5)\n    return {'n': args.get('n')}\n"
EVENTS = 30


async def store_events(home, count: int) -> list[str]:
    """Events of /guest/t written into the hub's own SQLite file, as if a feed had stored them."""
    store = SqlStore(f"sqlite+aiosqlite:///{home / 'triggerhub.db'}")
    await store.open()
    try:
        now_ms = int(time.time() * 1000)
        events = [TriggerEvent(f"ev-{uuid.uuid4().hex}", "test", "test.reading", FullyQualifiedName("guest", "t"),
                               {"n": i}, time_ms=now_ms - 60_000 + i) for i in range(count)]
        for event in events:
            assert await store.accept(Acceptance(event=event))
        return [event.id for event in events]
    finally:
        await store.close()


async def test_kill9_after_a_replay_then_restart_runs_each_replayed_event_once(hub_process):
    async with aiohttp.ClientSession() as session:
        for path, body in (("actions/slow", {"exec": {"kind": "python:default", "code": SLOW}}), ("triggers/t", {}),
                           ("rules/r", {"trigger": "t", "action": "slow"})):
            assert (await _call(session, hub_process, "PUT", f"namespaces/_/{path}", body))[0] == 200
        events = await store_events(hub_process.home, EVENTS)
        window = {"from": 0, "to": int(time.time() * 1000)}
        status, answer = await _call(session, hub_process, "POST", "namespaces/_/rules/r/replay", window)
        assert (status, answer["run"]) == (200, EVENTS), answer

    hub_process.kill9()
    assert pending_rows(hub_process.home) > 0, "the kill came after every replayed run had ended: nothing was recovered"
    hub_process.start()

    async with aiohttp.ClientSession() as session:
        async def observe() -> tuple[list[str], int]:
            status, records = await _call(session, hub_process, "GET", "namespaces/_/activations", name="slow",
                                          docs="true", limit=200)
            assert status == 200, records
            replayed = [next(a["value"] for a in r["annotations"] if a["key"] == "event") for r in records]
            return sorted(replayed), await asyncio.to_thread(pending_rows, hub_process.home)

        # Quiet: nothing pending and no new record for 2 s (a second run of a 0.5 s action would show).
        seen, pending = await wait_quiet(observe, lambda s: s[1] == 0 and len(s[0]) >= EVENTS, quiet_s=2, timeout_s=90)
        assert (collections.Counter(seen), pending) == (collections.Counter({event_id: 1 for event_id in events}), 0)

        status, again = await _call(session, hub_process, "POST", "namespaces/_/rules/r/replay", window)
        assert (status, again["run"], again["skipped"]) == (200, 0, EVENTS)
        assert (await wait_quiet(observe, lambda s: s[1] == 0, quiet_s=2, timeout_s=30))[0] == sorted(events)
