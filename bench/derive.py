"""The added cost of derived triggers on the event path, in events per second (issue 14).

    nice python bench/derive.py [--events N] [--rounds R] [--tasks T]

An embedded engine on a fresh SQLite file (no rules, no actions: only the event path) takes N
events on each of three triggers, from T concurrent emitters (as the MQTT feed stores up to 64
messages at once), keys cycling over 100 devices:

  plain     a trigger that feeds nothing: the floor, measured in the same run
  absence   a trigger feeding an `absence` derived trigger (every event re-arms its key)
  all       a trigger feeding an `all` derived trigger (every second event completes a pair:
            a derived event goes to the outbox and is accepted on the derived trigger)

Each figure is the best of R rounds, the scenarios interleaved; the ratio to `plain` is the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from triggerhub.config import load_config
from triggerhub.engine.core import API_FIRE_TYPE, Engine
from triggerhub.engine.dispatch import LocalDispatcher
from triggerhub.engine.distributed import NoLocalRuns
from triggerhub.engine.entities import Entities
from triggerhub.model import FullyQualifiedName, Identity, Trigger, TriggerEvent, new_activation_id, now_ms
from triggerhub.store.sql import SqlStore

DEVICES = 100
GUEST = Identity("guest", "guest", "", "", {})


async def setup(engine: Engine) -> None:
    entities = engine.entities
    for name in ("plain", "heartbeat", "door", "badge"):
        await entities.put_trigger(GUEST, FullyQualifiedName("guest", name), {}, overwrite=False)
    await entities.put_trigger(GUEST, FullyQualifiedName("guest", "silent"), {"derive": {
        "kind": "absence", "from": "heartbeat", "key": "$.data.deviceId", "forS": 3600}}, overwrite=False)
    await entities.put_trigger(GUEST, FullyQualifiedName("guest", "both"), {"derive": {
        "kind": "all", "from": ["door", "badge"], "key": "$.data.deviceId", "windowS": 3600}}, overwrite=False)


async def run(engine: Engine, triggers: list[str], count: int, tasks: int) -> float:
    """Events per second for `count` events spread over `triggers` (in turn), `tasks` at a time."""
    fqns = [FullyQualifiedName("guest", t) for t in triggers]
    for fqn in fqns:  # warm the entity cache
        if await engine.entities.find(fqn, Trigger) is None:
            raise SystemExit(f"trigger {fqn} is missing")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def emitter() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            fqn = fqns[i % len(fqns)]
            event = TriggerEvent(new_activation_id(), "bench", API_FIRE_TYPE, fqn,
                                 {"deviceId": f"dev-{(i // len(fqns)) % DEVICES}"}, time_ms=now_ms(), subject="guest")
            await engine.emit(event)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(tasks):
            group.create_task(emitter())
    while await engine.store.list_derived_outbox(limit=1):  # derived events accepted too
        await asyncio.sleep(0.001)
    return count / (time.perf_counter() - start)


async def main(events: int, rounds: int, tasks: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        config = load_config(env={"TRIGGERHUB_HOME": home, "TRIGGERHUB_DEPLOY_EXAMPLES": "false"})
        store = SqlStore(f"sqlite+aiosqlite:///{Path(home) / 'bench.db'}")
        await store.open()
        try:
            entities = Entities(store, config.limits, max_code_bytes=config.api.max_code_bytes)
            engine = Engine(config=config, store=store, invoker=NoLocalRuns(), entities=entities,
                            dispatcher=LocalDispatcher(store), derive_loop=True)
            async with engine:
                await setup(engine)
                scenarios = {"plain": ["plain"], "absence": ["heartbeat"], "all": ["door", "badge"]}
                best = dict.fromkeys(scenarios, 0.0)
                for _ in range(rounds):
                    for name, triggers in scenarios.items():
                        best[name] = max(best[name], await run(engine, triggers, events, tasks))
                for name, rate in best.items():
                    print(f"{name:<8} {rate:9.0f} events/s   {rate / best['plain']:.2f} x plain")
                print(f"derived events: {await store.count_events('/guest/both')} on /guest/both "
                      f"(expected {rounds * events // 2}); absence keys armed: {DEVICES}")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds, args.tasks))
