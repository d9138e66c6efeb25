"""The event path with a retry policy and with derived triggers, as ratios to the plain path (issue 14).

One embedded hub (the harness's process-runtime hub), four triggers fired through the REST API,
each with a rule to the nodejs noop, measured in interleaved rounds (plain, retry, absence, all,
then retry, absence, all, plain, ...), so that each ratio divides by the plain path measured in
the same minutes:

  plain     the rule alone (what fires.one measures): the floor of this scenario
  retry     the rule with `retry` and `deadLetter` set; the action succeeds, so the policy never
            retries: what a policy adds to every event (annotations, the delivery kept with the
            pending invocation, the settle step after each run)
  absence   the trigger also feeds an `absence` derived trigger (100 device keys, forS 3600):
            every event re-arms its key's state row in the accept transaction
  all       two triggers, alternating, feed an `all` derived trigger (pairs share a device key):
            every second event derives one, accepted on the derived trigger whose rule runs the
            same noop (a second action would make the runtime pool evict one action's runtimes
            for the other's under its memory cap: cold starts, not correlation), so the rate
            counts the derived events' acceptance and run too

Per case and round, once the hub's CPU is quiet: wrk with 1 connection (p50/p99 of the 202,
drained), then 16 connections timed from the first fire until every action record is stored,
with the hub process's CPU time (user + system, its threads, not the runtimes') per event over
that run. Each case's figures are the medians over the rounds; the ratios are the medians'
ratios to plain's.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass, fields

from bench import systems
from bench.context import CONCURRENCY, Context, drained, noop_ready, warm
from bench.measure import Row, cpu_ms, wrk

DEVICES = 100
RETRY = {"maxAttempts": 3, "initialDelayMs": 200}


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    path: str  # under /triggers/; {n} cycles over `spread` triggers
    spread: int
    derived_per_event: float = 0.0  # derived events per source event, each one more noop record


@dataclass(frozen=True, slots=True)
class Measured:
    p50_ms: float
    p99_ms: float
    latency_samples: int
    rate_per_s: float
    rate_samples: int
    cpu_ms_per_event: float


CASES = (Case("plain", "d_plain", 0), Case("retry", "d_retry", 0), Case("absence", "d_heartbeat", 0),
         Case("all", "d_pair{n}", 2, derived_per_event=0.5))


def setup(hub: systems.Hub, ctx: Context) -> None:
    noop_ready(hub, ctx)

    def put(path: str, body: dict[str, object]) -> None:
        hub.must("PUT", f"{path}?overwrite=true", body)

    for trigger in ("d_plain", "d_retry", "d_alerts"):
        put(f"triggers/{trigger}", {})
    for trigger in ("d_heartbeat", "d_pair0", "d_pair1"):  # in order per device, not per trigger (ordering.py)
        put(f"triggers/{trigger}", {"annotations": [{"key": "ordering-key", "value": "deviceId"}]})
    put("triggers/d_silent", {"derive": {"kind": "absence", "from": "d_heartbeat", "key": "$.data.deviceId",
                                         "forS": 3600}})
    put("triggers/d_paired", {"derive": {"kind": "all", "from": ["d_pair0", "d_pair1"], "key": "$.data.deviceId",
                                         "windowS": 3600}})
    for trigger in ("d_plain", "d_heartbeat", "d_pair0", "d_pair1"):
        put(f"rules/on-{trigger}", {"trigger": trigger, "action": "noop"})
    put("rules/on-d_retry", {"trigger": "d_retry", "action": "noop", "retry": RETRY,
                             "deadLetter": {"trigger": "d_alerts"}})
    put("rules/on-d_paired", {"trigger": "d_paired", "action": "noop"})


def wait_quiet(pid: int, *, busy_ms: float = 10, every_s: float = 0.25, timeout_s: float = 5) -> None:
    """Until the process used less than `busy_ms` of CPU in `every_s`: the case before (the `all`
    case's last derived events and runs) has settled and does not slow this one down."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before_ms = cpu_ms(pid)
        time.sleep(every_s)
        if cpu_ms(pid) - before_ms < busy_ms:
            return


def measure(hub: systems.Hub, case: Case, *, sequential_s: float, concurrent_s: float) -> Measured:
    wait_quiet(hub.pid)
    headers = {"Authorization": hub.auth_header}
    url = f"{hub.api}/triggers/{case.path}"
    first = hub.count("noop")
    sequential = wrk(url, connections=1, duration_s=sequential_s, headers=headers, spread=case.spread,
                     unique=uuid.uuid4().hex[:8], keys=DEVICES)
    before = wait_records(hub, case, first, sequential.requests, time.perf_counter(), connections=1)[0]
    cpu_before_ms = cpu_ms(hub.pid)
    start = time.perf_counter()
    concurrent = wrk(url, connections=CONCURRENCY, duration_s=concurrent_s, headers=headers, spread=case.spread,
                     unique=uuid.uuid4().hex[:8], keys=DEVICES)
    for result in (sequential, concurrent):
        if result.status_errors or result.socket_errors:
            raise SystemExit(f"{url}: {result.status_errors} error statuses, {result.socket_errors} socket errors")
    after, elapsed_s = wait_records(hub, case, before, concurrent.requests, start, connections=CONCURRENCY)
    # wrk leaves uncounted the requests in flight when it stops: the records count them
    events = (after - before) / (1 + case.derived_per_event)
    return Measured(sequential.p50_ms, sequential.p99_ms, sequential.requests, events / elapsed_s,
                    concurrent.requests, (cpu_ms(hub.pid) - cpu_before_ms) / events)


def warm_up(hub: systems.Hub, case: Case) -> None:
    before = hub.count("noop")
    warmed = wrk(f"{hub.api}/triggers/{case.path}", connections=CONCURRENCY, duration_s=1,
                 headers={"Authorization": hub.auth_header}, spread=case.spread, unique=uuid.uuid4().hex[:8],
                 keys=DEVICES)
    wait_records(hub, case, before, warmed.requests, time.perf_counter(), connections=CONCURRENCY)


def wait_records(hub: systems.Hub, case: Case, before: int, events: int, start: float, *,
                 connections: int) -> tuple[int, float]:
    """Until the noop records of `events` source events and of their derived events are stored:
    (count, seconds since `start`)."""
    expected = before + events
    if case.derived_per_event:
        # A pair derives when both its events are accepted. wrk counts the answered requests only:
        # of the pairs it counts, those with a request in flight at its stop (one per connection)
        # may lack a partner, so they are not awaited.
        expected += int(events * case.derived_per_event) - connections
    return drained(hub, "noop", expected, start)


def delivery(ctx: Context) -> None:
    hub = ctx.hub()
    setup(hub, ctx)
    quick = ctx.sizes.wrk_s < 2
    rounds = 1 if quick else 2
    sequential_s = concurrent_s = 1.0  # the whole scenario stays under 40 s (the `all` case drains slowly)
    started = time.perf_counter()
    for case in CASES:  # warm-up: caches, the derived triggers' specs, runtimes
        warm_up(hub, case)
    measured: dict[str, list[Measured]] = {case.name: [] for case in CASES}
    for round_index in range(rounds):
        # each round starts one case later: the case after `all` (whose backlog may still be
        # settling) is not always the same one
        for case in CASES[round_index:] + CASES[:round_index]:
            measured[case.name].append(measure(hub, case, sequential_s=sequential_s, concurrent_s=concurrent_s))
    print(f"  delivery: {len(CASES)} cases x {rounds} round(s) measured in {time.perf_counter() - started:.0f} s",
          flush=True)
    plain = median_of(measured["plain"])
    timed = (f"wrk POST /triggers/T (rule -> nodejs noop), {rounds} interleaved round(s) of: 1 connection for "
             f"{sequential_s:.0f} s (p50/p99 of the 202, stored before it), then {CONCURRENCY} connections for "
             f"{concurrent_s:.0f} s, rate from the first fire to the last action record stored; medians")
    descriptions = {
        "plain": "the rule alone: this scenario's floor",
        "retry": f"the rule with retry {RETRY} and a deadLetter trigger; the action succeeds, so nothing is retried",
        "absence": f"the trigger also feeds an absence derived trigger ({DEVICES} device keys, forS 3600): every "
                   "event re-arms its key",
        "all": f"two triggers, alternating, feed an `all` derived trigger ({DEVICES} device keys, pairs share a key): "
               "every second event derives one, whose rule runs the same noop (events/s counts the source "
               "events, timed until the derived events' runs are stored too)",
    }
    for case in CASES:
        mine = median_of(measured[case.name])
        values = {"hub_cpu_ms_per_event": round(mine.cpu_ms_per_event, 3), "rounds": float(rounds)}
        ratio: dict[str, float] = {}
        floor = ""
        if case.name != "plain":
            floor = "delivery.plain"
            ratio = {"p50": round(mine.p50_ms / plain.p50_ms, 2), "p99": round(mine.p99_ms / plain.p99_ms, 2),
                     "rate": round(mine.rate_per_s / plain.rate_per_s, 3),
                     "cpu": round(mine.cpu_ms_per_event / plain.cpu_ms_per_event, 2)}
            values |= {"floor_p50_ms": round(plain.p50_ms, 3), "floor_rate_per_s": round(plain.rate_per_s, 1),
                       "floor_hub_cpu_ms_per_event": round(plain.cpu_ms_per_event, 3)}
        ctx.add(Row(f"delivery.{case.name}", "triggerhub", f"{timed}. {case.name}: {descriptions[case.name]}",
                    p50_ms=round(mine.p50_ms, 3), p99_ms=round(mine.p99_ms, 3),
                    latency_samples=int(mine.latency_samples), rate_per_s=round(mine.rate_per_s, 1),
                    rate_samples=int(mine.rate_samples), floor=floor, ratio=ratio, values=values))


def median_of(runs: list[Measured]) -> Measured:
    medians = {f.name: statistics.median(getattr(run, f.name) for run in runs) for f in fields(Measured)}
    return Measured(**medians)

