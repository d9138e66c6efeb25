"""What a retry policy costs on the event path (issue 14), in events/s, embedded mode.

Starts `triggerhub up` (SQLite, process runtime) in a child process and fires events through the
REST API with 16 concurrent clients at two triggers, alternating rounds:
  - floor: a rule without a policy (OpenWhisk's behaviour), to a nodejs noop;
  - retry: the same with `retry` and `deadLetter` set, a policy that never triggers (the action
    succeeds), so the difference is what a policy adds to every event (annotations, the
    delivery kept with the pending invocation, the settle step after each run).
Each round's rate is events fired / time from the first fire until the last record is stored, and
its cost the hub process's CPU time (user + system) per event: on a loaded machine the CPU time is
the steadier measure. Prints the median of each and the ratios retry/floor, measured in the same run.

    python bench/retries.py [--events 1000] [--rounds 3]
    PYTHONPATH=/path/to/other/checkout python bench/retries.py --floor-only   # the floor of another tree
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from embedded import hub, put_action  # noqa: E402

CONCURRENCY = 16


async def count(session: aiohttp.ClientSession, base: str, action: str) -> int:
    async with session.get(f"{base}/activations", params={"name": action, "count": "true"}) as response:
        return int((await response.json())["activations"])


def hub_process() -> psutil.Process:
    """The `triggerhub up` child started by embedded.hub (the action proxies are not counted)."""
    return next(child for child in psutil.Process().children()
                if "triggerhub.cli" in child.cmdline() and "up" in child.cmdline())


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def round_rate(session: aiohttp.ClientSession, base: str, trigger: str, action: str,
                     events: int) -> tuple[float, float]:
    """(events/s, hub CPU ms per event)."""
    before = await count(session, base, action)
    process = hub_process()
    cpu_before = cpu_s(process)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def fire(i: int) -> None:
        async with gate:
            async with session.post(f"{base}/triggers/{trigger}", json={"i": i}) as response:
                assert response.status == 202, await response.text()

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for i in range(events):
            tasks.create_task(fire(i))
    while await count(session, base, action) < before + events:
        await asyncio.sleep(0.02)
    elapsed_s = time.perf_counter() - start
    return events / elapsed_s, (cpu_s(process) - cpu_before) * 1000 / events


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor-only", action="store_true", help="only the rule without a policy (for a tree "
                        "without issue 14)")
    args = parser.parse_args()
    async with hub("process", prewarm=0) as (session, base):
        cases = {"floor": ("t_floor", "noop_floor", {})}
        if not args.floor_only:
            cases["retry"] = ("t_retry", "noop_retry", {"retry": {"maxAttempts": 3, "initialDelayMs": 200},
                                                        "deadLetter": {"trigger": "t_alerts"}})
        await put(session, f"{base}/triggers/t_alerts", {})
        for trigger, action, extra in cases.values():
            await put_action(session, base, action)
            await put(session, f"{base}/triggers/{trigger}", {})
            await put(session, f"{base}/rules/r_{action}", {"trigger": trigger, "action": action, **extra})
            await round_rate(session, base, trigger, action, 200)  # warm-up: runtimes started, caches filled
        rates: dict[str, list[float]] = {name: [] for name in cases}
        costs: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (trigger, action, _extra) in cases.items():
                rate, cost = await round_rate(session, base, trigger, action, args.events)
                rates[name].append(rate)
                costs[name].append(cost)
    for name in cases:
        print(f"{name:6} events/s: median {statistics.median(rates[name]):7.1f}  rounds "
              f"{', '.join(f'{r:.1f}' for r in rates[name])}")
        print(f"{name:6} hub CPU ms/event: median {statistics.median(costs[name]):.3f}  rounds "
              f"{', '.join(f'{c:.3f}' for c in costs[name])}")
    if "retry" in rates:
        rate_ratio = statistics.median(rates["retry"]) / statistics.median(rates["floor"])
        cost_ratio = statistics.median(costs["retry"]) / statistics.median(costs["floor"])
        print(f"retry / floor: events/s {rate_ratio:.3f}, CPU per event {cost_ratio:.3f} "
              f"({args.rounds} rounds of {args.events} events each, alternating)")


async def put(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> None:
    async with session.put(url, json=body) as response:
        assert response.status == 200, await response.text()


if __name__ == "__main__":
    asyncio.run(main())
