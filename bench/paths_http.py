"""HTTP paths of triggerhub beside their floors: invoke, sequence, fires, webhook, web action, RSS.

Paths that store and then run ("end to end") are drained: their rate counts the action records
stored from wrk's first request of the 16-connection run until the last record is stored.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

from bench import systems
from bench.context import CONCURRENCY, NOOP_JS, Context, drained, http_pair, http_row, noop_ready, warm
from bench.measure import Row, WrkResult, cpu_ms, tree_rss_mib, wrk


def measure_floor_aiohttp(ctx: Context) -> Row:
    url = ctx.once("server:aiohttp", lambda: ctx.stack.enter_context(systems.aiohttp_floor(ctx.scratch)))
    return http_row("floor.aiohttp", "floor", "wrk POST -> minimal aiohttp handler answers from an in-process "
                    "function -> response read", "", http_pair(f"{url}/fire", ctx=ctx))


def measure_floor_unix(ctx: Context) -> Row:
    url = ctx.once("server:unix", lambda: ctx.stack.enter_context(systems.unix_floor(ctx.scratch)))
    return http_row("floor.unix", "floor", "wrk POST -> aiohttp handler -> Unix socket (keep-alive) -> warm "
                    "worker process -> response read", "", http_pair(f"{url}/run", ctx=ctx))


def invoke_process(ctx: Context) -> None:
    hub = ctx.hub()
    noop_ready(hub, ctx)
    pair = http_pair(f"{hub.api}/actions/noop?blocking=true&result=true", ctx=ctx,
                     headers={"Authorization": hub.auth_header})
    ctx.add(http_row("invoke.process", "triggerhub", "wrk POST /actions/noop?blocking=true&result=true (nodejs noop, "
                     "warm process runtime) -> 200 with the result read", "floor.unix", pair))


def sequence(ctx: Context) -> None:
    """A 5-step sequence of noops beside one noop invoke, both warm, sequential (wrk, 1 connection).

    What a step adds over the single invoke includes the component's own run, so the overhead per
    step is that minus the component's run as the hub recorded it (the `duration` of the timed
    sequences' records, i.e. the summed /run times of their components, divided by 5; a mean
    without the top and bottom tenth, since durations are whole milliseconds and the median of
    them would be too coarse). That charges the sequence with what the hub does around each /run
    (lease, logs), which a direct invoke pays too, so it overstates; `vs_direct_per_step_ms`, the
    5 steps against 5 direct invokes ((p50 of the sequence - 5 x p50 of one invoke) / 5), credits
    the sequence with the 4 requests it saves, so it understates. `hub_cpu_per_added_step_ms` is
    the hub process's CPU time (all its threads, not the runtimes') per sequence minus per single
    invoke, / 4: what each added step costs the hub, which a loaded machine distorts far less.
    """
    hub = ctx.hub()
    noop_ready(hub, ctx)
    hub.must("PUT", "actions/seq5", {"exec": {"kind": "sequence", "components": ["/_/noop"] * 5}})
    warm(hub, "seq5")
    headers = {"Authorization": hub.auth_header}
    cpu_before_ms = cpu_ms(hub.pid)
    single = wrk(f"{hub.api}/actions/noop?blocking=true&result=true", duration_s=ctx.sizes.wrk_s, headers=headers)
    cpu_single_ms = cpu_ms(hub.pid)
    since_ms = int(time.time() * 1000)
    five = wrk(f"{hub.api}/actions/seq5?blocking=true&result=true", duration_s=ctx.sizes.wrk_s, headers=headers)
    cpu_five_ms = cpu_ms(hub.pid)
    records = hub.must("GET", f"activations?name=seq5&docs=true&limit=200&since={since_ms}")
    assert isinstance(records, list) and records, "no seq5 records"
    run_ms = trimmed_mean([record["duration"] for record in records]) / 5
    between_ms = trimmed_mean([record["end"] - record["start"] - record["duration"] for record in records]) / 5
    with_run = (five.p50_ms - single.p50_ms) / 4
    row = Row("sequence", "triggerhub", "overhead per step of a blocking 5-step sequence of noops: (p50 of the "
              "sequence - p50 of one noop invoke) / the 4 added steps, minus one component's run (its /run as the "
              "hub recorded it: duration of the last <=200 timed sequence records / 5, 10%-trimmed mean); both sequential, wrk 1 "
              "connection, warm", p50_ms=round(five.p50_ms, 3), p99_ms=round(five.p99_ms, 3),
              latency_samples=five.requests, floor="floor.unix",
              values={"per_step_ms": round(with_run - run_ms, 3), "per_step_with_run_ms": round(with_run, 3),
                      "component_run_ms": round(run_ms, 3),
                      "vs_direct_per_step_ms": round((five.p50_ms - 5 * single.p50_ms) / 5, 3), "hub_between_steps_ms": round(between_ms, 3),
                      "hub_cpu_per_added_step_ms": round(((cpu_five_ms - cpu_single_ms) / five.requests
                                                          - (cpu_single_ms - cpu_before_ms) / single.requests) / 4, 3),
                      "records": len(records), "single_p50_ms": round(single.p50_ms, 3),
                      "single_samples": single.requests})
    ctx.add(row)


def trimmed_mean(values: list[float], cut: float = 0.1) -> float:
    """The mean without the lowest and highest `cut` of the values."""
    ordered = sorted(values)
    drop = int(len(ordered) * cut)
    return statistics.fmean(ordered[drop:len(ordered) - drop])


def end_to_end(hub: systems.Hub, url: str, action: str, ctx: Context, *, spread: int = 0,
               unique: bool = False, headers: dict[str, str] | None = None) -> tuple[WrkResult, WrkResult, float]:
    """Sequential wrk run (drained), then a 16-connection run timed from its start until every record is stored."""
    first = hub.count(action)
    sequential = wrk(url, connections=1, duration_s=ctx.sizes.wrk_s, headers=headers, spread=spread,
                     unique=uuid.uuid4().hex if unique else "")
    before, _ = drained(hub, action, first + sequential.requests, time.perf_counter())
    start = time.perf_counter()
    concurrent = wrk(url, connections=CONCURRENCY, duration_s=ctx.sizes.wrk_s, headers=headers, spread=spread,
                     unique=uuid.uuid4().hex if unique else "")
    for result in (sequential, concurrent):
        if result.status_errors or result.socket_errors:
            raise SystemExit(f"{url}: {result.status_errors} error statuses, {result.socket_errors} socket errors")
    count, elapsed_s = drained(hub, action, before + concurrent.requests, start)
    return sequential, concurrent, (count - before) / elapsed_s


def fires(ctx: Context, triggers: int) -> None:
    hub = ctx.hub()
    noop_ready(hub, ctx)
    for n in range(triggers):
        hub.must("PUT", f"triggers/tick{triggers}x{n}", {})
        hub.must("PUT", f"rules/on-tick{triggers}x{n}", {"trigger": f"tick{triggers}x{n}", "action": "noop"})
    url = f"{hub.api}/triggers/tick{triggers}x" + ("{n}" if triggers > 1 else "0")
    sequential, concurrent, e2e = end_to_end(hub, url, "noop", ctx, spread=triggers,
                                             headers={"Authorization": hub.auth_header})
    name = "fires.one" if triggers == 1 else "fires.many"
    ctx.add(Row(name, "triggerhub", f"wrk POST /triggers/tick ({triggers} trigger(s), rule -> noop): p50/p99 of the "
                "202 (stored before it), sequential; rate: first fire of the 16-connection run -> last action "
                "record stored", p50_ms=round(sequential.p50_ms, 3), p99_ms=round(sequential.p99_ms, 3),
                latency_samples=sequential.requests, rate_per_s=round(e2e, 1), rate_samples=concurrent.requests,
                floor="floor.aiohttp", values={"accepted_rate_per_s": round(concurrent.rate_per_s, 1)}))


def fires_one(ctx: Context) -> None:
    fires(ctx, 1)


def fires_many(ctx: Context) -> None:
    fires(ctx, 20)


def webhook(ctx: Context) -> None:
    hub = ctx.hub()
    noop_ready(hub, ctx)
    hub.must("PUT", "triggers/hook", {"annotations": [{"key": "feed", "value": "/whisk.system/webhook/webhook"}]})
    hub.must("POST", "/api/v1/namespaces/whisk.system/actions/webhook/webhook?blocking=true",
             {"lifecycleEvent": "CREATE", "triggerName": "/_/hook", "authKey": "", "verify": "none"})
    hub.must("PUT", "rules/on-hook", {"trigger": "hook", "action": "noop"})
    sequential, concurrent, e2e = end_to_end(hub, f"{hub.apihost}/hooks/guest/hook", "noop", ctx, unique=True)
    timed = ("wrk POST /hooks/guest/hook (verify none, distinct bodies, rule -> noop): p50/p99 of the 202 (stored "
             "before it), sequential; rate: ")
    ctx.add(Row("webhook.accepted", "triggerhub", timed + "202s/s at 16 connections",
                p50_ms=round(sequential.p50_ms, 3), p99_ms=round(sequential.p99_ms, 3),
                latency_samples=sequential.requests, rate_per_s=round(concurrent.rate_per_s, 1),
                rate_samples=concurrent.requests, floor="floor.aiohttp"))
    ctx.add(Row("webhook.e2e", "triggerhub", timed + "first delivery of the 16-connection run -> last action record "
                "stored", p50_ms=round(sequential.p50_ms, 3), p99_ms=round(sequential.p99_ms, 3),
                latency_samples=sequential.requests, rate_per_s=round(e2e, 1), rate_samples=concurrent.requests,
                floor="floor.aiohttp"))


def http_function(ctx: Context) -> None:
    hub = ctx.hub()
    hub.must("PUT", "actions/webnoop", {"exec": {"kind": "nodejs:default", "code": NOOP_JS},
                                        "annotations": [{"key": "web-export", "value": True}]})
    url = f"{hub.apihost}/api/v1/web/guest/default/webnoop.json"
    warm_web(url)
    ctx.add(http_row("http_function", "triggerhub", "wrk POST web action /api/v1/web/guest/default/webnoop.json "
                     "(nodejs noop) -> 200 read", "floor.unix", http_pair(url, ctx=ctx)))
    red_url, _, _ = ctx.node_red()
    warm_web(f"{red_url}/echo")
    ctx.add(http_row("http_function", "node-red", "wrk POST Node-RED flow: http in /echo -> function -> http "
                     "response, 200 read", "floor.unix", http_pair(f"{red_url}/echo", ctx=ctx)))


def warm_web(url: str) -> None:
    wrk(url, connections=CONCURRENCY, duration_s=1)


def rss(ctx: Context) -> None:
    # As scripts/up starts it, except that idle warm runtimes (and, with no lease at all for that
    # long, the stem cells) are reclaimed after `reclaim_s` (TRIGGERHUB_IDLE_TIMEOUT_S, default
    # 600 s), so that the run shows RSS returning to idle. Default stem cells: a kind's start only
    # after its first invoke (TRIGGERHUB_PREWARM=first-use), so the idle RSS has those of the kinds
    # the example manifests ran by then, if any.
    reclaim_s = 2 * ctx.sizes.idle_s + 5
    with systems.hub(ctx.scratch, prewarm=None, examples=True,
                     settings={"TRIGGERHUB_IDLE_TIMEOUT_S": str(reclaim_s)}) as hub:
        time.sleep(ctx.sizes.idle_s)
        idle_hub, idle_tree = tree_rss_mib(hub.pid)
        hub.must("PUT", "actions/noop", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
        peak = [idle_tree]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.25):
                peak.append(tree_rss_mib(hub.pid)[1])

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            warm(hub, "noop")
            wrk(f"{hub.api}/actions/noop?blocking=true&result=true", connections=CONCURRENCY,
                duration_s=ctx.sizes.wrk_s * 2, headers={"Authorization": hub.auth_header})
        finally:
            stop.set()
            sampler.join()
        after_hub, after_tree = tree_rss_mib(hub.pid)
        time.sleep(reclaim_s + 2)  # the pool reaps once a second
        reclaimed_hub, reclaimed_tree = tree_rss_mib(hub.pid)
    values = {"idle_hub_mib": round(idle_hub, 1), "idle_with_children_mib": round(idle_tree, 1),
              "load_peak_with_children_mib": round(max(peak), 1), "after_load_hub_mib": round(after_hub, 1),
              "after_load_with_children_mib": round(after_tree, 1), "load_samples": len(peak),
              "after_load_idle_hub_mib": round(reclaimed_hub, 1),
              "after_load_idle_with_children_mib": round(reclaimed_tree, 1)}
    ctx.add(Row("rss", "triggerhub", f"RSS of `triggerhub up` (process runtime, example manifests deployed, default "
                f"stem cells: a kind's after its first invoke) {ctx.sizes.idle_s:.0f} s after it answered /ping, alone and with its runtime processes "
                "(stem cells counted); then during and right after 16-connection noop invokes; then after "
                f"{reclaim_s + 2:.0f} s more idle (TRIGGERHUB_IDLE_TIMEOUT_S={reclaim_s:.0f} for this hub, default 600: "
                "warm runtimes unused that long are stopped, and the stem cells when nothing ran that long)",
                values=values))
    _, red_pid, _ = ctx.node_red()
    red_rss, _ = tree_rss_mib(red_pid)
    ctx.add(Row("rss", "node-red", "RSS of the Node-RED process with the bench flows (HTTP and MQTT), idle",
                values={"idle_mib": round(red_rss, 1)}))
