"""Process-runtime latency through ActionInvoker: cold start p50, warm invoke p50/p99.

    python bench/process_runtime.py [--cold 20] [--warm 1000] [--sandbox bwrap|none]

Cold: a new action revision per invoke, no stem cells (process spawn + /init + /run + logs).
Prewarmed: the same with one stem cell per kind, refilled between samples (/init + /run + logs).
Warm: sequential invokes of a noop on one warm runtime, and raw `/run` on the runtime alone.
`--sandbox bwrap` (the default, as `triggerhub up` runs) starts each proxy in the bubblewrap
sandbox; `--sandbox none` runs them unsandboxed, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace

from triggerhub.config import RuntimeConfig, SandboxChoice
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import RuntimeSpec
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.invoker.sandbox import Sandbox, find_sandbox
from triggerhub.model import Action, Exec, Invocation, StatusCode, new_activation_id, now_ms

NOOP = {"python:3.11": "def main(args):\n    return {}\n", "nodejs:20": "function main(args) { return {}; }"}


def percentile_ms(samples_s: list[float], fraction: float) -> float:
    ordered = sorted(samples_s)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def timed_invoke(invoker: ActionInvoker, action: Action) -> float:
    started = time.perf_counter()
    record = await invoker.invoke(Invocation(new_activation_id(), action, {}, "guest", "guest", now_ms()))
    elapsed = time.perf_counter() - started
    if record.response.status_code is not StatusCode.SUCCESS:
        raise SystemExit(f"benchmark action failed: {record.response.result}")
    return elapsed


async def bench_kind(kind: str, cold_runs: int, warm_runs: int, sandbox: Sandbox | None) -> dict[str, float]:
    factory = ProcessRuntimeFactory(sandbox=sandbox)
    action = Action("guest", "noop", Exec(kind, NOOP[kind]))
    pool = ContainerPool(factory, PoolConfig(memory_budget_mb=1 << 20))
    invoker = ActionInvoker(pool)
    cold = [await timed_invoke(invoker, replace(action, revision=i)) for i in range(cold_runs)]
    warm = [await timed_invoke(invoker, action) for _ in range(warm_runs)]
    await pool.close()

    stem_pool = ContainerPool(factory, PoolConfig(prewarm_count=1, prewarm_kinds=(kind,), memory_budget_mb=1 << 20))
    stem_invoker = ActionInvoker(stem_pool)
    prewarmed = []
    for i in range(cold_runs):
        await stem_pool.fill_prewarm()
        prewarmed.append(await timed_invoke(stem_invoker, replace(action, revision=10_000 + i)))
    await stem_pool.close()

    runtime = await factory.create(RuntimeSpec(kind, 256))
    await runtime.init({"code": NOOP[kind], "main": "main"}, 10_000)
    raw = []
    for _ in range(warm_runs):
        started = time.perf_counter()
        await runtime.run({"value": {}}, 10_000)
        await runtime.logs(1 << 20)
        raw.append(time.perf_counter() - started)
    await runtime.destroy()
    return {"cold_p50": percentile_ms(cold, 0.5), "prewarmed_p50": percentile_ms(prewarmed, 0.5),
            "warm_p50": percentile_ms(warm, 0.5), "warm_p99": percentile_ms(warm, 0.99),
            "raw_run_p50": percentile_ms(raw, 0.5), "raw_run_p99": percentile_ms(raw, 0.99),
            "warm_mean": statistics.fmean(warm) * 1000}


async def main(cold_runs: int, warm_runs: int, sandbox_choice: str) -> None:
    sandbox = find_sandbox(RuntimeConfig(sandbox=SandboxChoice(sandbox_choice), allow_unsandboxed_root=True))
    print(f"sandbox: {sandbox_choice}")
    print(f"{'kind':<12} {'cold p50':>9} {'prewarm p50':>12} {'warm p50':>9} {'warm p99':>9} "
          f"{'raw run p50':>12} {'raw run p99':>12}   (ms; {cold_runs} cold, {warm_runs} warm)")
    for kind in NOOP:
        r = await bench_kind(kind, cold_runs, warm_runs, sandbox)
        print(f"{kind:<12} {r['cold_p50']:>9.2f} {r['prewarmed_p50']:>12.2f} {r['warm_p50']:>9.3f} "
              f"{r['warm_p99']:>9.3f} {r['raw_run_p50']:>12.3f} {r['raw_run_p99']:>12.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--warm", type=int, default=1000)
    parser.add_argument("--sandbox", choices=[c.value for c in SandboxChoice], default=SandboxChoice.BWRAP.value)
    options = parser.parse_args()
    asyncio.run(main(options.cold, options.warm, options.sandbox))
