"""Distributed mode: controller, workers and invokers as processes on Kafka and PostgreSQL.

Started through the test setup's Deployment (tests/plugins/distributed.py) in a fresh database and
topic prefix; one hot trigger is measured with 1 worker + 1 invoker, then with 2 + 2, twice:

- `fires.distributed`: its rule runs `noop`, so the rate is bound by CPU. Every process of the
  deployment, the broker and the database share this machine's cores, so adding processes adds
  no CPU: the row reports the CPU ms each role spends per fire (bench/cpu.py), which sets the
  rate the cores allow (2 cores = 2,000 CPU ms a second), whatever the run's share of them.
- `fires.distributed_slots`: its rule runs `nap`, an action that waits NAP_MS without using CPU,
  so the rate is bound by the activations an invoker runs at once: its pool's memory budget
  (TRIGGERHUB_MEMORY_BUDGET_MB, 2048) over the action's memory (256 MB) is 8 runtimes, so one
  invoker's bound is 8 / NAP_MS. It shows capacity growing with the processes that hold it.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from bench import profile, systems
from bench.cpu import CpuMeter
from bench.context import CONCURRENCY, NOOP_JS, Context, drained, warm
from bench.measure import Row, WrkResult, wrk
from tests.plugins.distributed import Deployment, controller_apihost, deployment_env  # the test setup's roles
from tests.plugins.services import KAFKA_KEY, PG_URL_KEY, create_database, drop_database, service_setting


NAP_MS = 100
NAP_JS = f"function main() {{ return new Promise(done => setTimeout(() => done({{}}), {NAP_MS})); }}"
NAP_MEMORY_MB = 256
POOL_BUDGET_MB = 2048  # TRIGGERHUB_MEMORY_BUDGET_MB's default
NAP_SLOTS = POOL_BUDGET_MB // NAP_MEMORY_MB  # naps one invoker runs at once
NAP_WRK_S = 2
DRAIN_POLL_S = 0.1


def warm_slots(hub: systems.Hub, action: str) -> None:
    """Every slot of every invoker warm for `action`: 32 blocking invokes at once, twice (their
    keys spread them over the partitions, so over the invokers)."""
    for _ in range(2):
        threads = [threading.Thread(target=hub.must, args=("POST", f"actions/{action}?blocking=true", {}))
                   for _ in range(2 * CONCURRENCY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def hot_trigger_rate(hub: systems.Hub, ctx: Context, trigger: str, meter: CpuMeter, action: str = "noop",
                     duration_s: float | None = None) -> tuple[WrkResult, float, dict[str, float]]:
    """16 wrk connections firing one trigger for `duration_s` (the run's wrk time): (wrk result,
    fires/s from the first fire to the last record of `action` stored, CPU ms per fire of each role
    meanwhile)."""
    before = hub.count(action)
    cpu_before = meter.sample()
    start = time.perf_counter()
    result = wrk(f"{hub.api}/triggers/{trigger}", connections=CONCURRENCY,
                 duration_s=duration_s if duration_s is not None else ctx.sizes.wrk_s,
                 headers={"Authorization": hub.auth_header})
    if result.status_errors or result.socket_errors:
        raise SystemExit(f"fires of {trigger}: {result.status_errors} error statuses, {result.socket_errors} socket errors")
    # Each poll is a count over the growing table through the controller; 10 a second keep the
    # harness's own load small beside the deployment's (the rate is then up to 0.1 s late).
    count, elapsed_s = drained(hub, action, before + result.requests, start, timeout_s=300, poll_s=DRAIN_POLL_S)
    cpu_ms = meter.per_event_ms(cpu_before, meter.sample(), count - before)
    print(f"  CPU ms per fire: " + ", ".join(f"{role} {ms:.3f}" for role, ms in cpu_ms.items()), flush=True)
    return result, (count - before) / elapsed_s, cpu_ms


@contextmanager
def deployed(ctx: Context) -> Iterator[tuple[Profiled, systems.Hub]]:
    """Controller, 1 worker and 1 invoker in a fresh database and topic prefix; stopped and dropped after."""
    pg_admin, kafka = service_setting(PG_URL_KEY), service_setting(KAFKA_KEY)
    if not pg_admin or not kafka:
        raise SystemExit("distributed: Kafka or PostgreSQL is not running (scripts/services/{kafka,postgres}.sh start)")
    url = create_database(pg_admin, "th_bench_dist")
    root = ctx.scratch / "distributed"
    root.mkdir()
    relaxed = {"TRIGGERHUB_INVOCATIONS_PER_MINUTE": "100000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "100000",
               "TRIGGERHUB_FIRES_PER_MINUTE": "100000000"}
    deployment = Deployment(root, deployment_env(url, kafka, root / "home", **relaxed))
    try:
        with ExitStack() as profilers:
            print("  starting controller, 1 worker, 1 invoker (PostgreSQL, Kafka) ...", flush=True)
            controller = deployment.start("controller")
            deployment.start("worker")
            deployment.start("invoker", "--id", "0")
            auth = deployment.credentials["guest"]
            hub = systems.Hub(controller.pid, controller_apihost(controller),
                              "Basic " + base64.b64encode(auth.encode()).decode(), root)
            invokers_up(hub, 1)
            yield Profiled(deployment, ctx, profilers, CpuMeter(deployment, url)), hub
        summarize_profiles(deployment, ctx)
    finally:
        deployment.stop_all()
        drop_database(pg_admin, url)


class Profiled:
    """The deployment; with --profile, `profiled()` starts py-spy on each of its processes not yet
    sampled, which then runs until the scenario ends (so start-up and warm-up can be left out)."""

    def __init__(self, deployment: Deployment, ctx: Context, profilers: ExitStack, meter: CpuMeter) -> None:
        self.deployment = deployment
        self.meter = meter
        self._ctx = ctx
        self._profilers = profilers
        self._sampled: set[int] = set()

    def start(self, role: str, *args: str) -> None:
        self.deployment.start(role, *args)

    def profiled(self) -> None:
        if self._ctx.profile_dir is None:
            return
        for process in self.deployment.processes:
            if process.pid not in self._sampled:
                self._sampled.add(process.pid)
                raw = self._ctx.profile_dir / f"distributed-{process.log_path.stem}.txt"
                self._profilers.enter_context(profile.profiled(process.pid, raw))


def summarize_profiles(deployment: Deployment, ctx: Context) -> None:
    if ctx.profile_dir is None:
        return
    for process in deployment.processes:
        raw = ctx.profile_dir / f"distributed-{process.log_path.stem}.txt"
        ctx.profiles[f"distributed: {process.log_path.stem}"] = profile.summarize(raw)


def distributed(ctx: Context) -> None:
    with deployed(ctx) as (deployment, hub):
        hub.must("PUT", "actions/noop", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
        warm(hub, "noop")
        deployment.profiled()  # from here on, with --profile: start-up and warm-up are left out
        hub.must("PUT", "triggers/hot", {})
        hub.must("PUT", "rules/on-hot", {"trigger": "hot", "action": "noop"})
        _, one_each, one_each_cpu = hot_trigger_rate(hub, ctx, "hot", deployment.meter)
        print(f"  one hot trigger, 1 worker + 1 invoker: {one_each:.0f} fires/s end to end", flush=True)
        hub.must("PUT", "actions/nap", {"exec": {"kind": "nodejs:default", "code": NAP_JS},
                                        "limits": {"memory": NAP_MEMORY_MB}})
        hub.must("PUT", "triggers/paced", {})
        hub.must("PUT", "rules/on-paced", {"trigger": "paced", "action": "nap"})
        warm_slots(hub, "nap")
        _, naps_one_each, _ = hot_trigger_rate(hub, ctx, "paced", deployment.meter, "nap", duration_s=NAP_WRK_S)
        print(f"  one trigger of {NAP_MS} ms naps, 1 worker + 1 invoker: {naps_one_each:.0f} fires/s end to end "
              f"(bound: {NAP_SLOTS} at once / {NAP_MS} ms = {NAP_SLOTS * 1000 / NAP_MS:.0f}/s); adding a worker and an "
              "invoker ...", flush=True)
        deployment.start("worker")
        deployment.start("invoker", "--id", "1")
        invokers_up(hub, 2)
        warm(hub, "noop")
        deployment.profiled()
        url, headers = f"{hub.api}/actions/noop?blocking=true&result=true", {"Authorization": hub.auth_header}
        sequential = wrk(url, duration_s=ctx.sizes.wrk_s, headers=headers)
        concurrent = wrk(url, connections=CONCURRENCY, duration_s=ctx.sizes.wrk_s, headers=headers)
        ctx.add(Row("invoke.distributed", "triggerhub", "wrk POST /actions/noop?blocking=true&result=true on the "
                    "controller -> Kafka -> invoker (process runtime) -> PostgreSQL -> Kafka -> controller -> 200 "
                    "read; 2 workers, 2 invokers", p50_ms=round(sequential.p50_ms, 3),
                    p99_ms=round(sequential.p99_ms, 3), latency_samples=sequential.requests,
                    rate_per_s=round(concurrent.rate_per_s, 1), rate_samples=concurrent.requests, floor="floor.unix"))
        result, two_each, two_each_cpu = hot_trigger_rate(hub, ctx, "hot", deployment.meter)
        ctx.add(Row("fires.distributed", "triggerhub", "wrk POST /triggers/hot (one trigger, rule -> noop) at 16 "
                    "connections on the controller (p50/p99: of its 202s, not one at a time); rate: first fire -> "
                    "last action record stored (PostgreSQL); 2 workers + 2 invokers, and 1 + 1 before them",
                    p50_ms=round(result.p50_ms, 3), p99_ms=round(result.p99_ms, 3), latency_samples=result.requests,
                    rate_per_s=round(two_each, 1), rate_samples=result.requests, floor="floor.aiohttp",
                    values={"rate_1_worker_1_invoker_per_s": round(one_each, 1),
                            "accepted_rate_per_s": round(result.rate_per_s, 1),
                            **{f"cpu_ms_per_fire_1_1_{role}": ms for role, ms in one_each_cpu.items()},
                            **{f"cpu_ms_per_fire_2_2_{role}": ms for role, ms in two_each_cpu.items()}}))
        warm_slots(hub, "nap")  # the noop runs above took the pools' memory: naps start warm again
        naps, naps_two_each, _ = hot_trigger_rate(hub, ctx, "paced", deployment.meter, "nap", duration_s=NAP_WRK_S)
        ctx.add(Row("fires.distributed_slots", "triggerhub", f"wrk POST /triggers/paced (one trigger, rule -> nap: "
                    f"an action that waits {NAP_MS} ms, {NAP_MEMORY_MB} MB, so {NAP_SLOTS} at once per invoker) at 16 "
                    f"connections for {NAP_WRK_S} s; rate: first fire -> last record stored; 2 workers + 2 "
                    "invokers, and 1 + 1 before them", p50_ms=round(naps.p50_ms, 3), p99_ms=round(naps.p99_ms, 3),
                    latency_samples=naps.requests, rate_per_s=round(naps_two_each, 1), rate_samples=naps.requests,
                    values={"rate_1_worker_1_invoker_per_s": round(naps_one_each, 1),
                            "bound_per_invoker_per_s": NAP_SLOTS * 1000 / NAP_MS,
                            "growth": round(naps_two_each / naps_one_each, 2)}))


def invokers_up(hub: systems.Hub, count: int, timeout_s: float = 120) -> None:
    """Wait until `count` invokers are up and each holds partitions of the invocations topic."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, states = hub.call("GET", "/invokers")
        _, statistics = hub.call("GET", "/invokers/statistics")
        assert isinstance(states, dict) and isinstance(statistics, dict)
        up = [name for name, state in states.items() if state == "up"]
        if len(up) == count and all(statistics.get(name, {}).get("partitions", 0) > 0 for name in up):
            return
        time.sleep(0.2)
    raise SystemExit(f"distributed: {count} invokers did not come up within {timeout_s:.0f} s")
