"""The derive loop of an engine on a real SQLite store, timed by a test clock: an absence is derived
exactly at its deadline and once, re-arms when the key is heard, and after a restart a key gets
the whole silence again. No rules and no actions: derived events are counted in the event log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from tests.plugins.clock import TestClock
from triggerhub.config import load_config
from triggerhub.engine.core import Engine
from triggerhub.engine.derive import IDLE_S
from triggerhub.engine.dispatch import LocalDispatcher
from triggerhub.engine.distributed import NoLocalRuns
from triggerhub.engine.entities import Entities
from triggerhub.model import FullyQualifiedName, Identity, TriggerEvent
from triggerhub.store.sql import SqlStore

GUEST = Identity("guest", "guest", "", "", {})
HEARTBEAT = FullyQualifiedName("guest", "heartbeat")
START_S = 1_800_000_000.0
FOR_S = 120


class CountingStore(SqlStore):
    """The real store, counting the derive loop's rounds (each ends reading the next deadline)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.rounds = 0

    async def next_derived_due_ms(self) -> int | None:
        self.rounds += 1
        return await super().next_derived_due_ms()


@contextlib.asynccontextmanager
async def engine_on(path: Path, clock: TestClock) -> AsyncIterator[Engine]:
    config = load_config(env={"TRIGGERHUB_HOME": str(path.parent), "TRIGGERHUB_DEPLOY_EXAMPLES": "false"})
    store = CountingStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    try:
        entities = Entities(store, config.limits, max_code_bytes=config.api.max_code_bytes, clock=clock)
        async with Engine(config=config, store=store, invoker=NoLocalRuns(), entities=entities,
                          dispatcher=LocalDispatcher(store), clock=clock, derive_loop=True) as engine:
            yield engine
    finally:
        await store.close()


async def heard(engine: Engine, clock: TestClock, n: int, device: str = "dev-1") -> None:
    event = TriggerEvent(f"beat-{n}", "test", "test.heartbeat", HEARTBEAT, {"deviceId": device},
                         time_ms=clock.now_ms())
    assert await engine.emit(event)


async def silences(engine: Engine) -> int:
    return await engine.store.count_events("/guest/silent")


async def wait_silences(engine: Engine, count: int) -> None:
    """Until `count` absences are accepted and none waits in the outbox (real time: store I/O)."""
    async with asyncio.timeout(20):
        while await silences(engine) < count or await engine.store.list_derived_outbox(limit=1):
            await asyncio.sleep(0.02)
    assert await silences(engine) == count


async def disarmed(engine: Engine) -> bool:
    """The key's state says nothing more will be derived until it is heard again."""
    found = await engine.store.get_derived_state("/guest/silent", "dev-1")
    assert found is not None
    state, due_ms = found
    return due_ms is None and json.loads(state)["armed"] is False


async def test_absence_at_its_deadline_once_rearmed_and_after_a_restart(tmp_path):
    clock = TestClock(now_s=START_S)
    db = tmp_path / "derive.db"
    async with engine_on(db, clock) as engine:
        await engine.entities.put_trigger(GUEST, HEARTBEAT, {}, overwrite=False)
        await engine.entities.put_trigger(GUEST, FullyQualifiedName("guest", "silent"), {"derive": {
            "kind": "absence", "from": "heartbeat", "key": "$.data.deviceId", "forS": FOR_S}}, overwrite=False)
        await heard(engine, clock, 1)
        await clock.advance_to(START_S + FOR_S - 0.001)
        assert await silences(engine) == 0
        await clock.advance_to(START_S + FOR_S)  # the deadline to the millisecond
        await wait_silences(engine, 1)
        assert await disarmed(engine)
        await clock.advance(10 * FOR_S)  # a longer silence derives nothing more
        assert await silences(engine) == 1 and await disarmed(engine)
        await heard(engine, clock, 2)  # re-armed
        await clock.advance(FOR_S)
        await wait_silences(engine, 2)
        await heard(engine, clock, 3)  # armed when the hub stops
    stopped_ms = clock.now_ms()

    # Down for 10 minutes: the deadline passed meanwhile, but after the restart the key gets the
    # whole silence again (its heartbeats sent meanwhile would come first).
    restart_s = clock.now_s() + 600
    await clock.advance_to(restart_s)
    async with engine_on(db, clock) as engine:
        await clock.advance_to(restart_s + FOR_S - 0.001)
        assert await silences(engine) == 2
        await clock.advance_to(restart_s + FOR_S)
        await wait_silences(engine, 3)
        assert await disarmed(engine)
        assert stopped_ms + 600_000 + FOR_S * 1000 == clock.now_ms()


async def idle(clock: TestClock, seconds: int) -> None:
    """Let `seconds` pass on the clock a second at a time, the loop's store reads running between."""
    for _ in range(seconds):
        await clock.advance(1)
        await asyncio.sleep(0.005)


async def test_the_loop_sleeps_until_the_nearest_deadline_and_wakes_on_an_earlier_one(tmp_path):
    clock = TestClock(now_s=START_S)
    async with engine_on(tmp_path / "derive.db", clock) as engine:
        store = engine.store
        assert isinstance(store, CountingStore)
        await engine.entities.put_trigger(GUEST, HEARTBEAT, {}, overwrite=False)
        await engine.entities.put_trigger(GUEST, FullyQualifiedName("guest", "silent"), {"derive": {
            "kind": "absence", "from": "heartbeat", "key": "$.data.deviceId", "forS": 5}}, overwrite=False)
        await idle(clock, 5)
        before = store.rounds
        await idle(clock, 120)  # nothing armed: one look per IDLE_S (30 s), not one a second
        assert store.rounds - before <= 120 // IDLE_S + 1, store.rounds - before

        heard_s = clock.now_s()  # the loop naps towards its idle look; this deadline comes first
        await heard(engine, clock, 1)
        await clock.advance_to(heard_s + 5 - 0.001)
        assert await silences(engine) == 0
        await clock.advance_to(heard_s + 5)
        await wait_silences(engine, 1)
        assert await disarmed(engine)
