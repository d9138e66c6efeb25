"""Docker runtime latency at the Runtime seam: cold start (create + /init) and warm /run.

    scripts/services/dockerd.sh start && export $(grep ^DOCKER_HOST= .cache/services.env)
    python -m triggerhub.invoker.images && python bench/docker_runtime.py [--cold 10] [--warm 300]

Targets: cold start p50 <= 600 ms, warm run p50 <= 3 ms. Needs a running dockerd and the images.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from triggerhub.invoker.base import RuntimeSpec
from triggerhub.invoker.docker import DockerRuntime, DockerRuntimeFactory

ACTIONS = {
    "python:3.11": "def main(args):\n    return {'n': args.get('n', 0) + 1}\n",
    "nodejs:20": "function main(args) { return {n: (args.n || 0) + 1}; }\n",
}
MEMORY_MB = 256


def init_value(kind: str) -> dict[str, object]:
    return {"name": "bench", "main": "main", "binary": False, "code": ACTIONS[kind], "env": {}}


def run_body(n: int) -> dict[str, object]:
    return {"value": {"n": n}, "namespace": "guest", "action_name": "/guest/bench", "action_version": "0.0.1",
            "activation_id": uuid.uuid4().hex, "transaction_id": "bench", "deadline": "0"}


def percentile(samples_ms: list[float], fraction: float) -> float:
    ordered = sorted(samples_ms)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def cold_start_ms(factory: DockerRuntimeFactory, kind: str) -> tuple[float, DockerRuntime]:
    started = time.perf_counter()
    runtime = await factory.create(RuntimeSpec(kind=kind, memory_mb=MEMORY_MB))
    response = await runtime.init(init_value(kind), timeout_ms=10_000)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise SystemExit(f"/init of {kind} failed: {response}")
    return elapsed_ms, runtime


async def bench_kind(factory: DockerRuntimeFactory, kind: str, cold_runs: int, warm_runs: int) -> None:
    cold: list[float] = []
    runtime: DockerRuntime | None = None
    for _ in range(cold_runs):
        elapsed_ms, runtime = await cold_start_ms(factory, kind)
        cold.append(elapsed_ms)
        await runtime.destroy()
    elapsed_ms, runtime = await cold_start_ms(factory, kind)
    warm: list[float] = []
    try:
        for n in range(warm_runs + 20):  # the first 20 warm the connection and the interpreter
            started = time.perf_counter()
            response = await runtime.run(run_body(n), timeout_ms=5_000)
            elapsed_ms = (time.perf_counter() - started) * 1000
            await runtime.logs(10_000)
            if response.status != 200 or response.body != {"n": n + 1}:
                raise SystemExit(f"/run of {kind} failed: {response}")
            if n >= 20:
                warm.append(elapsed_ms)
    finally:
        await runtime.destroy()
    print(f"{kind:<12} cold start (create+init) p50 {statistics.median(cold):7.1f} ms"
          f"  (min {min(cold):.1f}, max {max(cold):.1f}, n={len(cold)})")
    print(f"{'':<12} warm run p50 {percentile(warm, 0.5):6.2f} ms  p99 {percentile(warm, 0.99):6.2f} ms"
          f"  (n={len(warm)})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=10, help="cold starts per kind")
    parser.add_argument("--warm", type=int, default=300, help="warm runs per kind")
    args = parser.parse_args()
    factory = DockerRuntimeFactory(hub_id=f"bench{uuid.uuid4().hex[:6]}")
    try:
        for kind in ACTIONS:
            await bench_kind(factory, kind, args.cold, args.warm)
    finally:
        await factory.cleanup_orphans()


if __name__ == "__main__":
    asyncio.run(main())
