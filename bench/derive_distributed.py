"""The added cost of derived triggers on distributed mode's event path, state in PostgreSQL rows
(TRIGGERHUB_DERIVE_STATE=store) against the workers' Faust table (table), in events per second.

    nice python bench/derive_distributed.py [--events N] [--tasks T] [--modes table,store]

For each mode a fresh deployment (database and topic prefix; 1 controller, 1 worker, no invoker:
every rule is a shadow rule, so nothing runs) takes N fires on each of three triggers from T
concurrent clients, keys cycling over 100 devices; every trigger has the ordering key `deviceId`,
so one device's events keep their order and devices spread over the partitions:

  plain     feeds nothing: the floor, measured in the same deployment
  absence   feeds an `absence` trigger (forS 3600: every event re-arms its key, nothing derives);
            until every event is in the event log
  all       door and badge events feeding an `all` trigger; until all N/2 derived events are
            accepted on it (in table mode this includes the repartition topic and the table)

Figures are fires per second from the first fire to the end state; the ratio to `plain` is the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.plugins.distributed import ApiClient, Deployment, api_client, deployment_env  # noqa: E402
from tests.plugins.services import (  # noqa: E402
    KAFKA_KEY, PG_URL_KEY, create_database, drop_database, service_setting,
)
from triggerhub.store.sql import SqlStore  # noqa: E402

DEVICES = 100
NOOP = "def main(args):\n    return {}\n"
RELAXED = {"TRIGGERHUB_INVOCATIONS_PER_MINUTE": "1000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "1000000",
           "TRIGGERHUB_FIRES_PER_MINUTE": "1000000"}
ORDERED = {"annotations": [{"key": "ordering-key", "value": "deviceId"}]}


async def put(client: ApiClient, path: str, body: object) -> None:
    status, answer = await client.call("PUT", f"namespaces/_/{path}", body)
    if status != 200:
        raise SystemExit(f"PUT {path} answered {status}: {answer}")


async def declare(client: ApiClient) -> None:
    await put(client, "actions/noop", {"exec": {"kind": "python:3.11", "code": NOOP}})
    for name in ("plain", "heartbeat", "door", "badge"):
        await put(client, f"triggers/{name}", ORDERED)
        await put(client, f"rules/shadow-{name}", {"trigger": name, "action": "noop", "shadow": True})
    await put(client, "triggers/silent", {"derive": {"kind": "absence", "from": "heartbeat",
                                                     "key": "$.data.deviceId", "forS": 3600}})
    await put(client, "triggers/both", {"derive": {"kind": "all", "from": ["door", "badge"],
                                                   "key": "$.data.deviceId", "windowS": 3600}})


async def fire_all(client: ApiClient, fires: list[tuple[str, int]], tasks: int) -> None:
    queue = list(reversed(fires))

    async def fire_some() -> None:
        while queue:
            trigger, n = queue.pop()
            status, body = await client.call("POST", f"namespaces/_/triggers/{trigger}", {"deviceId": f"dev-{n % DEVICES}"})
            if status != 202:
                raise SystemExit(f"fire {n} of {trigger} answered {status}: {body}")

    async with asyncio.TaskGroup() as group:
        for _ in range(tasks):
            group.create_task(fire_some())


async def rate(client: ApiClient, store: SqlStore, fires: list[tuple[str, int]], tasks: int,
               done: tuple[str, int]) -> float:
    """Fires per second from the first fire until `done` (trigger, events in its log)."""
    start = time.perf_counter()
    await fire_all(client, fires, tasks)
    trigger, count = done
    async with asyncio.timeout(300):
        while await store.count_events(trigger) < count:
            await asyncio.sleep(0.05)
    return len(fires) / (time.perf_counter() - start)


async def measure(deployment: Deployment, events: int, tasks: int) -> dict[str, float]:
    controller = deployment.start("controller")
    deployment.start("worker")
    store = SqlStore(deployment.env["TRIGGERHUB_STORE_URL"])
    await store.open()
    try:
        async with api_client(deployment, controller) as client:
            await declare(client)
            await rate(client, store, [("plain", n) for n in range(50)], tasks, ("/guest/plain", 50))  # warm-up
            out = {"plain": await rate(client, store, [("plain", n) for n in range(events)], tasks,
                                       ("/guest/plain", 50 + events))}
            out["absence"] = await rate(client, store, [("heartbeat", n) for n in range(events)], tasks,
                                        ("/guest/heartbeat", events))
            pairs = [(trigger, n) for n in range(events // 2) for trigger in ("door", "badge")]
            out["all"] = await rate(client, store, pairs, tasks, ("/guest/both", events // 2))
            return out
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--modes", default="table,store")
    args = parser.parse_args()
    pg_admin, kafka = service_setting(PG_URL_KEY), service_setting(KAFKA_KEY)
    if not pg_admin or not kafka:
        raise SystemExit("start the services first: scripts/services/postgres.sh start; scripts/services/kafka.sh start")
    for mode in args.modes.split(","):
        url = create_database(pg_admin, "th_bench_derive")
        try:
            with tempfile.TemporaryDirectory(prefix="th-bench-derive-") as scratch:
                root = Path(scratch)
                env = deployment_env(url, kafka, root / "home", TRIGGERHUB_DERIVE_STATE=mode, **RELAXED)
                deployment = Deployment(root, env)
                try:
                    out = asyncio.run(measure(deployment, args.events, args.tasks))
                finally:
                    deployment.stop_all()
        finally:
            drop_database(pg_admin, url)
        floor = out["plain"]
        print(f"{mode:5}  plain {floor:6.0f} events/s   absence {out['absence']:6.0f}/s ({out['absence'] / floor:.2f}x)"
              f"   all {out['all']:6.0f}/s ({out['all'] / floor:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
