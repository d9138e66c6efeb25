"""A distributed worker's derive loop on PostgreSQL, woken by the store's notices: idle, it looks
at the store once per IDLE_S (not every SHARED_IDLE_S); a derived event or an armed deadline
committed by another process (a second store and engine, as a controller or the feeds process)
wakes it at once, with the test clock standing still; when the notices' connection is killed it
looks every SHARED_IDLE_S, reconnects, and loses no change made meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
from sqlalchemy.engine import make_url

from tests.plugins.clock import TestClock
from triggerhub.config import load_config
from triggerhub.engine.core import Engine
from triggerhub.engine.derive import IDLE_S, SHARED_IDLE_S
from triggerhub.engine.dispatch import LocalDispatcher
from triggerhub.engine.distributed import NoLocalRuns
from triggerhub.engine.entities import Entities
from triggerhub.model import FullyQualifiedName, Identity, TriggerEvent
from triggerhub.store.notify import APPLICATION_NAME, PgDeriveNotices
from triggerhub.store.sql import SqlStore

GUEST = Identity("guest", "guest", "", "", {})
START_S = 1_800_000_000.0
FOR_S = 5
RECONNECT_S = 8.0  # real seconds before the notices reconnect, in the test of their loss


@contextlib.asynccontextmanager
async def engine_on(url: str, clock: TestClock, home: str, *, loop: bool,
                    reconnect_s: float = 0.5) -> AsyncIterator[Engine]:
    """A worker (`loop`: the derive loop, with notices) or another process that only accepts events."""
    config = load_config(env={"TRIGGERHUB_HOME": home, "TRIGGERHUB_DEPLOY_EXAMPLES": "false"})
    store = SqlStore(url)
    await store.open()
    try:
        entities = Entities(store, config.limits, max_code_bytes=config.api.max_code_bytes, clock=clock,
                            cache_ttl_s=0.0)
        async with Engine(config=config, store=store, invoker=NoLocalRuns(), entities=entities,
                          dispatcher=LocalDispatcher(store), clock=clock, derive_loop=loop,
                          derive_idle_s=SHARED_IDLE_S, derive_notices=PgDeriveNotices(url, reconnect_min_s=reconnect_s) if loop else None) as engine:
            yield engine
    finally:
        await store.close()


async def declare(engine: Engine) -> None:
    for name in ("heartbeat", "door", "badge"):
        await engine.entities.put_trigger(GUEST, FullyQualifiedName("guest", name), {}, overwrite=False)
    await engine.entities.put_trigger(GUEST, FullyQualifiedName("guest", "silent"), {"derive": {
        "kind": "absence", "from": "heartbeat", "key": "$.data.deviceId", "forS": FOR_S}}, overwrite=False)
    await engine.entities.put_trigger(GUEST, FullyQualifiedName("guest", "both"), {"derive": {
        "kind": "all", "from": ["door", "badge"], "key": "$.data.deviceId", "windowS": 600}}, overwrite=False)


async def fire(engine: Engine, clock: TestClock, trigger: str, event_id: str, device: str) -> None:
    event = TriggerEvent(event_id, "test", "test.event", FullyQualifiedName("guest", trigger), {"deviceId": device},
                         time_ms=clock.now_ms())
    assert await engine.emit(event)


async def until(check: Callable[[], object], what: str, timeout_s: float = 10) -> None:
    """Real time (store I/O and PostgreSQL's notices), the test clock standing still."""
    try:
        async with asyncio.timeout(timeout_s):
            while not (await check() if asyncio.iscoroutinefunction(check) else check()):
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout_s} s") from None


async def derived(engine: Engine, trigger: str, count: int) -> None:
    async def done() -> bool:
        return (await engine.store.count_events(f"/guest/{trigger}") >= count
                and not await engine.store.list_derived_outbox(limit=1))
    await until(done, f"{count} derived events on {trigger}")
    assert await engine.store.count_events(f"/guest/{trigger}") == count


async def idle(clock: TestClock, seconds: int) -> None:
    """Let `seconds` pass on the clock a second at a time, the loop's store reads running between."""
    for _ in range(seconds):
        await clock.advance(1)
        await asyncio.sleep(0.02)


async def settled_rounds(worker: Engine) -> int:
    """The loop's rounds once no round has started for 0.2 s (real time): it naps."""
    while True:
        before = worker.deriver.statistics().rounds
        await asyncio.sleep(0.2)
        if worker.deriver.statistics().rounds == before:
            return before


async def test_an_idle_worker_looks_once_per_idle_s_and_other_processes_changes_wake_it(fresh_pg_url, tmp_path):
    clock = TestClock(now_s=START_S)
    async with engine_on(fresh_pg_url, clock, str(tmp_path), loop=True) as worker, \
            engine_on(fresh_pg_url, clock, str(tmp_path), loop=False) as controller:
        await declare(worker)
        await until(lambda: worker.deriver.statistics().notices_live, "notices live")
        await idle(clock, 5)
        before = await settled_rounds(worker)
        await idle(clock, 120)  # nothing armed: one look per IDLE_S (30 s), not one per SHARED_IDLE_S (2 s)
        assert (await settled_rounds(worker)) - before <= 120 // IDLE_S + 1

        # An `all` pair accepted by another process: its outbox row's notice wakes the loop.
        await fire(controller, clock, "door", "door-1", "dev-1")
        await fire(controller, clock, "badge", "badge-1", "dev-1")
        await derived(worker, "both", 1)

        # A deadline armed by another process: the loop wakes, and naps until that deadline
        # instead of its idle look 30 s on.
        looked = await settled_rounds(worker)
        heard_s = clock.now_s()
        await fire(controller, clock, "heartbeat", "beat-1", "dev-7")
        await until(lambda: worker.deriver.statistics().rounds > looked, "the loop woken by the deadline's notice")
        await settled_rounds(worker)
        await clock.advance_to(heard_s + FOR_S - 0.001)
        await asyncio.sleep(0.2)
        assert await worker.store.count_events("/guest/silent") == 0
        await clock.advance_to(heard_s + FOR_S)
        await derived(worker, "silent", 1)
        [silence] = await worker.store.list_events("/guest/silent", since_ms=0, upto_ms=clock.now_ms())
        assert isinstance(silence.data, dict) and silence.data["key"] == "dev-7"
        assert silence.time_ms == round((heard_s + FOR_S) * 1000)

        # Heartbeats of a live key re-arm it later: no notice, no round.
        looked = await settled_rounds(worker)
        await fire(controller, clock, "heartbeat", "beat-2", "dev-8")  # armed: one notice
        await until(lambda: worker.deriver.statistics().rounds > looked, "the loop woken by dev-8's deadline")
        looked = await settled_rounds(worker)
        for n in range(3, 8):
            await fire(controller, clock, "heartbeat", f"beat-{n}", "dev-8")
        assert await settled_rounds(worker) == looked


async def test_lost_notices_mean_the_short_look_until_they_return_and_nothing_is_missed(fresh_pg_url, tmp_path):
    clock = TestClock(now_s=START_S)
    async with engine_on(fresh_pg_url, clock, str(tmp_path), loop=True, reconnect_s=RECONNECT_S) as worker, \
            engine_on(fresh_pg_url, clock, str(tmp_path), loop=False) as controller:
        await declare(worker)
        await until(lambda: worker.deriver.statistics().notices_live, "notices live")
        admin = await asyncpg.connect(make_url(fresh_pg_url).set(drivername="postgresql")
                                      .render_as_string(hide_password=False))
        try:
            killed = await admin.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                          "WHERE application_name = $1 AND datname = current_database()",
                                          APPLICATION_NAME)
        finally:
            await admin.close()
        assert killed == 1
        await until(lambda: not worker.deriver.statistics().notices_live, "notices lost")
        lost_s = time.monotonic()
        # Unheard, the loop looks every SHARED_IDLE_S (2 s) until the reconnect (RECONNECT_S of
        # real time on); a pair accepted meanwhile sends its notice to nobody.
        before = await settled_rounds(worker)
        for _ in range(10):  # a second at a time, each look finished before the next step
            await clock.advance(1)
            await settled_rounds(worker)
        assert time.monotonic() - lost_s < RECONNECT_S and not worker.deriver.statistics().notices_live
        assert (await settled_rounds(worker)) - before >= 10 // SHARED_IDLE_S - 1
        await fire(controller, clock, "door", "door-1", "dev-1")
        await fire(controller, clock, "badge", "badge-1", "dev-1")
        await settled_rounds(worker)
        assert await worker.store.count_events("/guest/both") == 0  # the clock stands: no look yet
        await until(lambda: worker.deriver.statistics().notices_live, "notices back", timeout_s=RECONNECT_S + 10)
        await derived(worker, "both", 1)  # the look on reconnecting finds it
