"""Event log retention and replay: what retention adds to the event path, and replay throughput.

    python bench/event_log.py [--events 10000] [--tasks 32] [--rounds 3] [--replay 2000]

1. Accepting trigger events on SQLite (the store step every fire and feed event takes; one event,
   one invocation each), three ways in one run, each on a fresh database:
   - floor: the schema without migration 5's `events_by_time` index, and no pruner (as before);
   - index: the index, no pruner;
   - retention on: the index, and a pruner every second (60 times the default) whose bounds hold;
   - pruning: the index, and a pruner every second keeping 1000 events in all, deleting while
     the accepts go on.
   Accepts per CPU second of the whole process (the pruner's work included) and each one's
   ratio to the floor: on a machine shared with others, wall time is mostly their load.
2. Replay through an embedded hub (process runtime, a noop python action): N stored events of a
   trigger replayed through its rule, in events/s until the replay answered (every run accepted)
   and until every record is stored. The floor is the same N events emitted through the engine
   the way a feed emits them (matched, accepted, run and recorded), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from triggerhub.config import EventLogConfig, RuntimeConfig, load_config
from triggerhub.engine.retention import EventPruner
from triggerhub.model import Action, Exec, FullyQualifiedName, Invocation, TriggerEvent, new_activation_id
from triggerhub.store.base import Acceptance, ActivationQuery
from triggerhub.store.sql import SqlStore

ACTION = Action("guest", "noop", Exec("python:3.11", "def main(args):\n    return args\n"))
TRIGGER = FullyQualifiedName("guest", "sensor")
START_MS = int(time.time() * 1000) - 3_600_000  # an hour ago: inside the default retention


def acceptance(index: int) -> Acceptance:
    activation_id = new_activation_id()
    event = TriggerEvent(f"evt-{activation_id}", "mqtt://sensors", "triggerhub.mqtt", TRIGGER,
                         {"temperature": 21.5, "room": "lab"}, time_ms=START_MS + index)
    invocation = Invocation(activation_id, ACTION, {"temperature": 21.5}, "guest", "guest",
                            accepted_ms=START_MS + index, path_annotation="guest/noop")
    return Acceptance(event, [invocation])


async def concurrently(calls: list[Callable[[], Awaitable[object]]], tasks: int, *,
                       clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds (on `clock`) to run `calls` with `tasks` workers."""
    queue = list(reversed(calls))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    started = clock()
    async with asyncio.TaskGroup() as group:
        for _ in range(tasks):
            group.create_task(worker())
    return clock() - started


async def accepts_per_s(path: Path, count: int, tasks: int, *, index: bool, retention: EventLogConfig | None) -> float:
    url = f"sqlite+aiosqlite:///{path}"
    store = SqlStore(url)
    await store.open()
    if not index:
        await store.close()
        with sqlite3.connect(path) as db:
            db.execute("DROP INDEX events_by_time")
        store = SqlStore(url)
        await store.open()
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            if retention is not None:
                group.create_task(EventPruner(store, retention).run_until(stop))
            try:
                # CPU time of the whole process (loop, SQLite writer thread, pruner): the machine is
                # shared, and wall time measures the neighbours as much as this code.
                elapsed_s = await concurrently([lambda i=i: store.accept(acceptance(i)) for i in range(count)], tasks,
                                               clock=time.process_time)
            finally:
                stop.set()
    finally:
        await store.close()
    return count / elapsed_s


async def event_path(count: int, tasks: int, rounds: int) -> None:
    """Each configuration once per round, in turn, so that load on the machine hits them alike;
    the median of the rounds is shown."""
    configurations = {
        "floor (no events_by_time index, no pruner)": (False, None),
        "index, no pruner": (True, None),
        "retention on (index, pruner finds nothing)": (True, EventLogConfig(prune_interval_s=1.0)),
        "pruning (index, pruner deleting meanwhile)": (True, EventLogConfig(prune_interval_s=1.0, max_total=1000)),
    }
    rates: dict[str, list[float]] = {label: [] for label in configurations}
    with tempfile.TemporaryDirectory(prefix="th-bench-") as folder:
        for round_number in range(rounds):
            for position, (label, (index, retention)) in enumerate(configurations.items()):
                path = Path(folder, f"{round_number}-{position}.db")
                rates[label].append(await accepts_per_s(path, count, tasks, index=index, retention=retention))
    medians = {label: statistics.median(found) for label, found in rates.items()}
    floor = medians["floor (no events_by_time index, no pruner)"]
    print(f"event path, SQLite accept per CPU second ({count} events, {tasks} tasks, median of {rounds} rounds):")
    for label, rate in medians.items():
        runs = ", ".join(f"{r:.0f}" for r in rates[label])
        print(f"  {label:<44} {rate:8.0f}/s  = {rate / floor:.2f} x floor   (rounds: {runs})")


async def wait_records(store: SqlStore, count: int, timeout_s: float = 120) -> None:
    async with asyncio.timeout(timeout_s):
        while await store.count_activations(ActivationQuery("guest", name="noop")) < count:
            await asyncio.sleep(0.02)


async def replay_throughput(count: int, tasks: int) -> None:
    from triggerhub.cli.compose import running_hub
    from triggerhub.invoker.process import ProcessRuntimeFactory
    from triggerhub.invoker.sandbox import find_sandbox

    with tempfile.TemporaryDirectory(prefix="th-bench-") as folder:
        config = load_config(env={"TRIGGERHUB_HOME": folder, "TRIGGERHUB_PORT": "0", "TRIGGERHUB_DEPLOY_EXAMPLES": "false"})
        runtime = ProcessRuntimeFactory(sandbox=find_sandbox(RuntimeConfig()))
        async with running_hub(config, runtime=runtime) as hub, aiohttp.ClientSession() as session:
            headers = {"Authorization": "Basic " + base64.b64encode(hub.guest_auth.encode()).decode()}

            async def call(method: str, path: str, body: object) -> object:
                async with session.request(method, f"{hub.apihost}/api/v1/namespaces/_/{path}", json=body,
                                           headers=headers) as response:
                    answer = await response.json()
                    assert response.status == 200, answer
                    return answer

            await call("PUT", "actions/noop", {"exec": {"kind": "python:default", "code": ACTION.exec.code}})
            await call("PUT", "triggers/sensor", {})
            await call("PUT", "rules/log", {"trigger": "sensor", "action": "noop"})
            store, engine = hub.engine.store, hub.engine
            assert isinstance(store, SqlStore)

            emitted = [TriggerEvent(f"feed-{uuid.uuid4().hex}", "bench", "bench.reading", TRIGGER, {"n": i},
                                    time_ms=START_MS + i) for i in range(count)]
            started = time.perf_counter()
            await concurrently([lambda e=e: engine.emit(e) for e in emitted], tasks)
            accepted_s = time.perf_counter() - started
            await wait_records(store, count)
            floor_s = time.perf_counter() - started

            started = time.perf_counter()
            answer = await call("POST", "rules/log/replay", {"from": START_MS, "to": START_MS + count})
            answered_s = time.perf_counter() - started
            assert isinstance(answer, dict) and answer["run"] == count, answer
            await wait_records(store, 2 * count)
            replayed_s = time.perf_counter() - started
    print(f"replay through an embedded hub ({count} events, process runtime, noop python action):")
    print(f"  floor: emitted as a feed emits   accepted {count / accepted_s:7.0f} events/s, "
          f"recorded {count / floor_s:7.0f} events/s")
    print(f"  replay                           answered {count / answered_s:7.0f} events/s, "
          f"recorded {count / replayed_s:7.0f} events/s  = {floor_s / replayed_s:.2f} x floor")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replay", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(event_path(args.events, args.tasks, args.rounds))
    asyncio.run(replay_throughput(args.replay, args.tasks))


if __name__ == "__main__":
    main()
