"""Distributed mode end to end: warm blocking-invoke latency through Kafka, and fires/s.

    python bench/distributed.py [--invokes N] [--fires N] [--fire-tasks T] [--triggers N] [--logs DIR]

Starts 1 controller + 1 worker + 2 invokers (process runtime) as separate processes on the
Kafka broker and PostgreSQL that scripts/services/{kafka,postgres}.sh started, in a fresh
database and topic prefix. Prints blocking-invoke latency p50/p99 (client -> controller ->
Kafka -> invoker -> PostgreSQL -> Kafka -> controller -> client) and fires/s from the first fire
to the last action record stored.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.plugins.distributed import Deployment, api_client, deployment_env, wait_for_invokers  # noqa: E402
from tests.plugins.services import (  # noqa: E402
    KAFKA_KEY, PG_URL_KEY, create_database, drop_database, service_setting,
)

NOOP = "def main(args):\n    return {'n': args.get('n')}\n"
RELAXED = {"TRIGGERHUB_INVOCATIONS_PER_MINUTE": "1000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "1000000",
           "TRIGGERHUB_FIRES_PER_MINUTE": "1000000"}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(deployment: Deployment, invokes: int, fires: int, fire_tasks: int, triggers: int) -> None:
    controller = deployment.start("controller")
    deployment.start("worker")
    for invoker_id in (0, 1):
        deployment.start("invoker", "--id", str(invoker_id))
    async with api_client(deployment, controller) as client:
        await wait_for_invokers(client, 2)
        await client.call("PUT", "namespaces/_/actions/noop", {"exec": {"kind": "python:3.11", "code": NOOP}})
        for n in range(20):  # warm both invokers' runtimes
            await client.call("POST", "namespaces/_/actions/noop", {"n": n}, blocking=True)
        latencies_ms = []
        for n in range(invokes):
            start = time.perf_counter()
            status, _ = await client.call("POST", "namespaces/_/actions/noop", {"n": n}, blocking=True, result=True)
            latencies_ms.append((time.perf_counter() - start) * 1000)
            if status != 200:
                raise SystemExit(f"blocking invoke {n} answered {status}")
        print(f"warm blocking invoke through Kafka ({invokes} sequential): "
              f"p50 {percentile(latencies_ms, 0.5):.1f} ms, p99 {percentile(latencies_ms, 0.99):.1f} ms, "
              f"mean {statistics.fmean(latencies_ms):.1f} ms")

        for t in range(triggers):  # one trigger's events are matched in order; triggers in parallel
            await client.call("PUT", f"namespaces/_/triggers/tick{t}", {})
            await client.call("PUT", f"namespaces/_/rules/every{t}", {"trigger": f"/_/tick{t}", "action": "/_/noop"})
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(fires):
            queue.put_nowait(n)

        async def fire_all() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                status, body = await client.call("POST", f"namespaces/_/triggers/tick{n % triggers}", {"n": n})
                if status != 202:
                    raise SystemExit(f"fire {n} answered {status}: {body}")

        _, before = await client.call("GET", "namespaces/_/activations", name="noop", count=True)
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(fire_tasks):
                tasks.create_task(fire_all())
        accepted_s = time.perf_counter() - start
        expected = before["activations"] + fires
        while True:
            _, counted = await client.call("GET", "namespaces/_/activations", name="noop", count=True)
            if counted["activations"] >= expected:
                break
            await asyncio.sleep(0.05)
        elapsed_s = time.perf_counter() - start
        print(f"{fires} fires of {triggers} trigger(s) with {fire_tasks} concurrent clients: accepted in {accepted_s:.2f} s "
              f"({fires / accepted_s:.0f} fires/s); fire -> action record stored for all in {elapsed_s:.2f} s "
              f"({fires / elapsed_s:.0f} fires/s end to end)")
        split = {name: v.get("ran") for name, v in (await client.admin("invokers/statistics")).items()}
        print(f"activations per invoker: {split}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invokes", type=int, default=200)
    parser.add_argument("--fires", type=int, default=500)
    parser.add_argument("--fire-tasks", type=int, default=16)
    parser.add_argument("--triggers", type=int, default=1, help="spread the fires over this many triggers")
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs in this directory")
    args = parser.parse_args()
    pg_admin, kafka = service_setting(PG_URL_KEY), service_setting(KAFKA_KEY)
    if not pg_admin or not kafka:
        raise SystemExit("start the services first: scripts/services/postgres.sh start; scripts/services/kafka.sh start")
    url = create_database(pg_admin, "th_bench_dist")
    try:
        with tempfile.TemporaryDirectory(prefix="th-bench-dist-") as scratch:
            root = args.logs or Path(scratch)
            root.mkdir(parents=True, exist_ok=True)
            deployment = Deployment(root, deployment_env(url, kafka, root / "home", **RELAXED))
            try:
                asyncio.run(measure(deployment, args.invokes, args.fires, args.fire_tasks, args.triggers))
            finally:
                deployment.stop_all()
    finally:
        drop_database(pg_admin, url)


if __name__ == "__main__":
    main()
