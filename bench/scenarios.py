"""The scenarios of `python -m bench`: each one measures a path of triggerhub, its floor, and the peer.

HTTP scenarios run wrk twice against the same URL: one connection (sequential: p50/p99) and 16
connections (throughput). Paths that store and then run ("end to end") are also drained: the
end-to-end rate counts the action records stored from wrk's first request until the last one.
Systems are started once per run and shared by the scenarios that need them (see `Context`).
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import systems
from bench.measure import Row, WrkResult, percentile, publish_burst, publish_paced, receive_burst, tree_rss_mib, wrk
from bench.measure import mqtt_listener

NOOP_JS = "function main() { return {}; }"
NOOP_PY = "def main(args):\n    return {}\n"
MQTT_ECHO = ("def main(args):\n    payload = args.get('payload') or {}\n"
             "    return {'seq': payload.get('seq'), 'sent_ms': payload.get('sent_ms')}\n")
# A warm runtime keeps module state: the client connects once and publishes each reply (QoS 1).
MQTT_REPLY = """import json
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

client = None


def main(args):
    global client
    if client is None:
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect(args['broker_host'], int(args['broker_port']))
        client.loop_start()
    payload = args.get('payload') or {}
    reply = {'seq': payload.get('seq'), 'sent_ms': payload.get('sent_ms')}
    client.publish(args['reply_topic'], json.dumps(reply), qos=1)
    return reply
"""
CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each scenario does: `--quick` shrinks everything."""

    wrk_s: float
    mqtt_burst: int
    mqtt_paced: int
    first_invokes: int
    idle_s: float

    @classmethod
    def of(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(wrk_s=1, mqtt_burst=300, mqtt_paced=50, first_invokes=3, idle_s=3)
        return cls(wrk_s=3, mqtt_burst=5000, mqtt_paced=500, first_invokes=8, idle_s=10)


@dataclass
class Context:
    """What a run shares between scenarios: scratch folder, sizes, rows, and lazily started systems."""

    scratch: Path
    sizes: Sizes
    stack: ExitStack
    rows: dict[str, Row] = field(default_factory=dict)
    _cache: dict[str, object] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        """Record `row`; one with a floor gets that floor measured again now and its ratios to it."""
        key = f"{row.scenario}/{row.system}"
        if row.floor:
            floor = FLOORS[row.floor](self)
            self.rows.setdefault(f"{row.floor}/floor", floor)
            for name in ("p50_ms", "p99_ms", "rate_per_s"):
                mine, base = getattr(row, name), getattr(floor, name)
                if mine is not None and base:
                    row.ratio[name.split("_")[0]] = round(mine / base, 3 if name == "rate_per_s" else 2)
                    row.values[f"floor_{name}"] = base
        self.rows[key] = row
        print(f"  {key}: " + ", ".join(
            f"{k}={v}" for k, v in (("p50_ms", row.p50_ms), ("p99_ms", row.p99_ms), ("n", row.latency_samples),
                                    ("rate_per_s", row.rate_per_s), ("n_rate", row.rate_samples),
                                    ("ratio", row.ratio or None), ("values", row.values or None))
            if v is not None), flush=True)
        return row

    def once(self, key: str, make: Callable[[], object]) -> object:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def broker(self) -> tuple[str, int]:
        return self.once("broker", lambda: self.stack.enter_context(systems.mosquitto(self.scratch)))  # type: ignore[return-value]

    def hub(self, name: str = "process", *, runtime: str = "process", prewarm: int = 0) -> systems.Hub:
        def start() -> systems.Hub:
            print(f"  starting triggerhub up ({name}: runtime {runtime}, prewarm {prewarm}) ...", flush=True)
            return self.stack.enter_context(systems.hub(self.scratch, runtime=runtime, prewarm=prewarm))
        return self.once(f"hub:{name}", start)  # type: ignore[return-value]

    def node_red(self) -> tuple[str, int, str]:
        def start() -> tuple[str, int, str]:
            prefix = f"nr{uuid.uuid4().hex[:6]}"
            url, pid = self.stack.enter_context(systems.node_red(self.scratch, self.broker(), prefix))
            return url, pid, prefix
        return self.once("node-red", start)  # type: ignore[return-value]


def http_pair(url: str, *, ctx: Context, headers: dict[str, str] | None = None, spread: int = 0,
              unique: bool = False) -> tuple[WrkResult, WrkResult]:
    """(sequential run, 16-connection run) of wrk against `url`."""
    tag = uuid.uuid4().hex if unique else ""
    sequential = wrk(url, connections=1, duration_s=ctx.sizes.wrk_s, headers=headers, spread=spread, unique=tag)
    concurrent = wrk(url, connections=CONCURRENCY, duration_s=ctx.sizes.wrk_s, headers=headers, spread=spread,
                     unique=tag + "c" if tag else "")
    for result in (sequential, concurrent):
        if result.status_errors or result.socket_errors:
            raise SystemExit(f"{url}: {result.status_errors} error statuses, {result.socket_errors} socket errors")
    return sequential, concurrent


def http_row(scenario: str, system: str, timed: str, floor: str, pair: tuple[WrkResult, WrkResult],
             **values: float) -> Row:
    sequential, concurrent = pair
    return Row(scenario, system, timed, p50_ms=round(sequential.p50_ms, 3), p99_ms=round(sequential.p99_ms, 3),
               latency_samples=sequential.requests, rate_per_s=round(concurrent.rate_per_s, 1),
               rate_samples=concurrent.requests, floor=floor, values=dict(values))


# --- floors ----------------------------------------------------------------------------------------
# Each floor is measured again beside every row divided by it (the machine's load drifts); the floor
# rows of the report are their first measurement. Servers stay up, idle, between measurements.

def measure_floor_aiohttp(ctx: Context) -> Row:
    url = ctx.once("server:aiohttp", lambda: ctx.stack.enter_context(systems.aiohttp_floor(ctx.scratch)))
    return http_row("floor.aiohttp", "floor", "wrk POST -> minimal aiohttp handler answers from an in-process "
                    "function -> response read", "", http_pair(f"{url}/fire", ctx=ctx))


def measure_floor_unix(ctx: Context) -> Row:
    url = ctx.once("server:unix", lambda: ctx.stack.enter_context(systems.unix_floor(ctx.scratch)))
    return http_row("floor.unix", "floor", "wrk POST -> aiohttp handler -> Unix socket (keep-alive) -> warm "
                    "worker process -> response read", "", http_pair(f"{url}/run", ctx=ctx))


def measure_floor_mqtt(ctx: Context) -> Row:
    host, port = ctx.broker()
    topic = f"floor{uuid.uuid4().hex[:6]}/direct"
    burst_s = mqtt_burst_through(host, port, topic, topic, ctx.sizes.mqtt_burst)
    latencies = mqtt_paced_through(host, port, topic, topic, ctx.sizes.mqtt_paced)
    return Row("floor.mqtt", "floor", "QoS 1 publish -> Mosquitto -> subscriber receives (burst: mosquitto_pub -l "
               "-> mosquitto_sub -C; p50/p99: paho at 100 msg/s)", *latency_stats(latencies),
               rate_per_s=round(ctx.sizes.mqtt_burst / burst_s, 1), rate_samples=ctx.sizes.mqtt_burst)


def measure_floor_docker_run(ctx: Context) -> Row:
    def measure() -> Row:  # seconds per sample: measured once per run
        docker_env()
        samples = []
        for _ in range(ctx.sizes.first_invokes):
            start = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", "--network", "none", "triggerhub/python:3.11", "python3", "-c",
                            "pass"], check=True, capture_output=True)
            samples.append((time.perf_counter() - start) * 1000)
        return Row("floor.docker_run", "floor", "`docker run --rm --network none triggerhub/python:3.11 python3 -c "
                   "pass` from exec to exit", *latency_stats(samples))
    return ctx.once("floor.docker_run", measure)  # type: ignore[return-value]


FLOORS: dict[str, Callable[[Context], Row]] = {
    "floor.aiohttp": measure_floor_aiohttp, "floor.unix": measure_floor_unix, "floor.mqtt": measure_floor_mqtt,
    "floor.docker_run": measure_floor_docker_run,
}


def floor_scenario(name: str) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        ctx.add(FLOORS[name](ctx))
    return run


# --- triggerhub, process runtime -------------------------------------------------------------------

def noop_ready(hub: systems.Hub, ctx: Context) -> None:
    def make() -> bool:
        hub.must("PUT", "actions/noop", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
        warm(hub, "noop")
        return True
    ctx.once(f"noop:{hub.apihost}", make)


def warm(hub: systems.Hub, action: str) -> None:
    """Sequential invokes, then 16 concurrent, so every runtime wrk will use is warm."""
    for _ in range(10):
        hub.must("POST", f"actions/{action}?blocking=true&result=true", {})
    threads = [threading.Thread(target=lambda: [hub.must("POST", f"actions/{action}?blocking=true", {})
                                                for _ in range(3)]) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def invoke_process(ctx: Context) -> None:
    hub = ctx.hub()
    noop_ready(hub, ctx)
    pair = http_pair(f"{hub.api}/actions/noop?blocking=true&result=true", ctx=ctx,
                     headers={"Authorization": hub.auth_header})
    ctx.add(http_row("invoke.process", "triggerhub", "wrk POST /actions/noop?blocking=true&result=true (nodejs noop, "
                     "warm process runtime) -> 200 with the result read", "floor.unix", pair))


def sequence(ctx: Context) -> None:
    hub = ctx.hub()
    noop_ready(hub, ctx)
    hub.must("PUT", "actions/seq5", {"exec": {"kind": "sequence", "components": ["/_/noop"] * 5}})
    warm(hub, "seq5")
    headers = {"Authorization": hub.auth_header}
    single = wrk(f"{hub.api}/actions/noop?blocking=true&result=true", duration_s=ctx.sizes.wrk_s, headers=headers)
    five = wrk(f"{hub.api}/actions/seq5?blocking=true&result=true", duration_s=ctx.sizes.wrk_s, headers=headers)
    per_step = (five.p50_ms - single.p50_ms) / 4
    row = Row("sequence", "triggerhub", "p50 of a blocking 5-step sequence of noops minus p50 of one noop invoke, "
              "divided by the 4 added steps (each sequential, wrk 1 connection)", p50_ms=round(five.p50_ms, 3),
              p99_ms=round(five.p99_ms, 3), latency_samples=five.requests, floor="floor.unix",
              values={"per_step_ms": round(per_step, 3), "single_p50_ms": round(single.p50_ms, 3),
                      "single_samples": single.requests})
    ctx.add(row)
    if row.values.get("floor_p50_ms"):
        row.ratio["per_step"] = round(per_step / row.values["floor_p50_ms"], 2)


def drained(hub: systems.Hub, action: str, expected: int, start: float, timeout_s: float = 120) -> tuple[int, float]:
    """Poll the count of `action`'s records until it reaches `expected`: (count, seconds since `start`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = hub.count(action)
        if count >= expected:
            return count, time.perf_counter() - start
        if time.monotonic() > deadline:
            raise SystemExit(f"{action}: {count} of {expected} records stored after {timeout_s:.0f} s")
        time.sleep(0.02)


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


# --- MQTT ------------------------------------------------------------------------------------------

def latency_stats(samples: list[float]) -> tuple[float, float, int]:
    return round(percentile(samples, 0.5), 3), round(percentile(samples, 0.99), 3), len(samples)


def mqtt_burst_through(host: str, port: int, publish_topic: str, receive_topic: str, count: int) -> float:
    """Seconds from the first publish of a mosquitto_pub burst until mosquitto_sub received `count` on `receive_topic`."""
    receiver = receive_burst(host, port, receive_topic, count)
    time.sleep(0.5)  # mosquitto_sub has subscribed
    start = time.perf_counter()
    publisher = publish_burst(host, port, publish_topic, count)
    publisher.wait(timeout=300)
    if receiver.wait(timeout=300) != 0:
        raise SystemExit(f"mosquitto_sub on {receive_topic} did not receive {count} messages (exit {receiver.returncode})")
    return time.perf_counter() - start


def mqtt_paced_through(host: str, port: int, publish_topic: str, receive_topic: str, count: int) -> list[float]:
    """Publish `count` at 100 msg/s; ms from each publish to its receipt on `receive_topic`."""
    with mqtt_listener(host, port, receive_topic) as received:
        publish_paced(host, port, publish_topic, count, 100)
        deadline = time.monotonic() + 60
        while len(received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    latencies = [at - float(payload["sent_ms"]) for at, payload in received]  # type: ignore[arg-type]
    if len(latencies) < count:
        raise SystemExit(f"{receive_topic}: {len(latencies)} of {count} paced messages arrived")
    return latencies


def mqtt_hub_trigger(ctx: Context, hub: systems.Hub, name: str, action: str, code: str,
                     params: dict[str, object]) -> str:
    host, port = ctx.broker()
    prefix = f"{name}{uuid.uuid4().hex[:6]}"
    hub.must("PUT", f"actions/{action}", {"exec": {"kind": "python:default", "code": code},
                                          "parameters": [{"key": k, "value": v} for k, v in params.items()]})
    hub.must("POST", f"actions/{action}?blocking=true", {})  # a warm runtime
    hub.must("PUT", f"triggers/{name}", {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]})
    hub.must("POST", "/api/v1/namespaces/whisk.system/actions/mqtt/subscribe?blocking=true",
             {"lifecycleEvent": "CREATE", "triggerName": f"/_/{name}", "authKey": "", "qos": 1,
              "url": f"mqtt://{host}:{port}", "topics": [f"{prefix}/+/temp"]})
    hub.must("PUT", f"rules/on-{name}", {"trigger": name, "action": action})
    return prefix


def records(hub: systems.Hub, action: str, count: int) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    while len(found) < count:
        page = hub.must("GET", f"activations?name={action}&docs=true&limit=200&skip={len(found)}")
        assert isinstance(page, list)
        if not page:
            break
        found.extend(page)
    return found


def mqtt_stored(ctx: Context) -> None:
    hub = ctx.hub()
    host, port = ctx.broker()
    prefix = mqtt_hub_trigger(ctx, hub, "readings", "mqttecho", MQTT_ECHO, {})
    before = hub.count("mqttecho")
    start = time.perf_counter()
    publish_burst(host, port, f"{prefix}/dev0/temp", ctx.sizes.mqtt_burst).wait(timeout=300)
    count, elapsed_s = drained(hub, "mqttecho", before + ctx.sizes.mqtt_burst, start)
    burst_rate = (count - before) / elapsed_s
    before = count
    publish_paced(host, port, f"{prefix}/dev1/temp", ctx.sizes.mqtt_paced, 100)
    drained(hub, "mqttecho", before + ctx.sizes.mqtt_paced, time.perf_counter())
    latencies, to_start = [], []
    for record in records(hub, "mqttecho", ctx.sizes.mqtt_paced):
        result = record["response"]["result"]  # type: ignore[index]
        if result.get("sent_ms"):  # type: ignore[union-attr]
            latencies.append(float(record["end"]) - float(result["sent_ms"]))  # type: ignore[arg-type,index]
            to_start.append(float(record["start"]) - float(result["sent_ms"]))  # type: ignore[arg-type,index]
    ctx.add(Row("mqtt.stored", "triggerhub", "QoS 1 publish -> Mosquitto -> MQTT feed (event stored, PUBACK) -> rule "
                "-> python action -> action record (p50/p99: record's end time - publish time at 100 msg/s; rate: "
                "burst, first publish -> last record counted)", *latency_stats(latencies),
                rate_per_s=round(burst_rate, 1), rate_samples=ctx.sizes.mqtt_burst, floor="floor.mqtt",
                values={"to_action_start_p50_ms": round(percentile(to_start, 0.5), 3)}))


def mqtt_reply(ctx: Context) -> None:
    hub = ctx.hub()
    host, port = ctx.broker()
    reply_topic = f"threply{uuid.uuid4().hex[:6]}"
    prefix = mqtt_hub_trigger(ctx, hub, "replies", "mqttreply", MQTT_REPLY,
                              {"broker_host": host, "broker_port": port, "reply_topic": reply_topic})
    burst_s = mqtt_burst_through(host, port, f"{prefix}/dev0/temp", reply_topic, ctx.sizes.mqtt_burst)
    latencies = mqtt_paced_through(host, port, f"{prefix}/dev1/temp", reply_topic, ctx.sizes.mqtt_paced)
    timed = ("QoS 1 publish -> Mosquitto -> {} -> reply published (QoS 1) -> subscriber receives (burst: "
             "mosquitto_pub -l -> mosquitto_sub -C; p50/p99: paho at 100 msg/s)")
    ctx.add(Row("mqtt.reply", "triggerhub", timed.format("MQTT feed (event stored) -> rule -> python action"),
                *latency_stats(latencies), rate_per_s=round(ctx.sizes.mqtt_burst / burst_s, 1),
                rate_samples=ctx.sizes.mqtt_burst, floor="floor.mqtt"))
    _, _, red_prefix = ctx.node_red()
    burst_s = mqtt_burst_through(host, port, f"{red_prefix}/dev0/temp", f"{red_prefix}/reply", ctx.sizes.mqtt_burst)
    latencies = mqtt_paced_through(host, port, f"{red_prefix}/dev1/temp", f"{red_prefix}/reply",
                                   ctx.sizes.mqtt_paced)
    ctx.add(Row("mqtt.reply", "node-red", timed.format("Node-RED mqtt in (QoS 1) -> function -> mqtt out"),
                *latency_stats(latencies), rate_per_s=round(ctx.sizes.mqtt_burst / burst_s, 1),
                rate_samples=ctx.sizes.mqtt_burst, floor="floor.mqtt"))


# --- Docker runtime --------------------------------------------------------------------------------

def docker_env() -> None:
    """DOCKER_HOST from .cache/services.env (scripts/services/dockerd.sh) unless already set."""
    env_file = systems.ROOT / ".cache" / "services.env"
    if "DOCKER_HOST" not in os.environ and env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("DOCKER_HOST="):
                os.environ["DOCKER_HOST"] = line.split("=", 1)[1]


def first_invokes(hub: systems.Hub, tag: str, count: int, pause_s: float) -> list[float]:
    samples = []
    for i in range(count):
        hub.must("PUT", f"actions/{tag}{i}", {"exec": {"kind": "python:3.11", "code": NOOP_PY}})
        start = time.perf_counter()
        hub.must("POST", f"actions/{tag}{i}?blocking=true&result=true", {})
        samples.append((time.perf_counter() - start) * 1000)
        time.sleep(pause_s)  # the pool refills its stem cell
    return samples


def docker_cold(ctx: Context) -> None:
    docker_env()
    hub = ctx.hub("docker-cold", runtime="docker", prewarm=0)
    samples = first_invokes(hub, "cold", ctx.sizes.first_invokes, 0.2)
    ctx.add(Row("docker.cold", "triggerhub", "POST /actions/coldN?blocking=true of a new python:3.11 action, no stem "
                "cell (container create + start + /init + /run) -> 200 read", *latency_stats(samples),
                floor="floor.docker_run"))


def docker_prewarmed(ctx: Context) -> None:
    docker_env()
    hub = ctx.hub("docker-warm", runtime="docker", prewarm=1)
    time.sleep(3)  # the stem cells start
    samples = first_invokes(hub, "pre", ctx.sizes.first_invokes, 2.0)
    ctx.add(Row("docker.prewarmed", "triggerhub", "POST /actions/preN?blocking=true of a new python:3.11 action with "
                "a stem cell ready (/init + /run) -> 200 read", *latency_stats(samples), floor="floor.docker_run"))


def invoke_docker(ctx: Context) -> None:
    docker_env()
    hub = ctx.hub("docker-warm", runtime="docker", prewarm=1)
    hub.must("PUT", "actions/noop", {"exec": {"kind": "python:3.11", "code": NOOP_PY}})
    warm(hub, "noop")
    pair = http_pair(f"{hub.api}/actions/noop?blocking=true&result=true", ctx=ctx,
                     headers={"Authorization": hub.auth_header})
    ctx.add(http_row("invoke.docker", "triggerhub", "wrk POST /actions/noop?blocking=true&result=true (python noop, "
                     "warm Docker container) -> 200 with the result read", "floor.unix", pair))


# --- resident memory -------------------------------------------------------------------------------

def rss(ctx: Context) -> None:
    with systems.hub(ctx.scratch) as hub:
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
    values = {"idle_hub_mib": round(idle_hub, 1), "idle_with_children_mib": round(idle_tree, 1),
              "load_peak_with_children_mib": round(max(peak), 1), "after_load_hub_mib": round(after_hub, 1),
              "after_load_with_children_mib": round(after_tree, 1)}
    ctx.add(Row("rss", "triggerhub", f"RSS of `triggerhub up` (process runtime) {ctx.sizes.idle_s:.0f} s after it "
                "answered /ping; then during and after 16-connection noop invokes (with its runtime processes)",
                values=values, rate_samples=len(peak)))
    _, red_pid, _ = ctx.node_red()
    red_rss, _ = tree_rss_mib(red_pid)
    ctx.add(Row("rss", "node-red", "RSS of the Node-RED process with the bench flows, after the runs above",
                values={"idle_hub_mib": round(red_rss, 1)}))


# --- distributed -----------------------------------------------------------------------------------

def hot_trigger_rate(hub: systems.Hub, ctx: Context, trigger: str) -> tuple[WrkResult, float]:
    """16 wrk connections firing one trigger: (wrk result, fires/s from the first fire to the last record stored)."""
    before = hub.count("noop")
    start = time.perf_counter()
    result = wrk(f"{hub.api}/triggers/{trigger}", connections=CONCURRENCY, duration_s=ctx.sizes.wrk_s,
                 headers={"Authorization": hub.auth_header})
    if result.status_errors or result.socket_errors:
        raise SystemExit(f"fires of {trigger}: {result.status_errors} error statuses, {result.socket_errors} socket errors")
    count, elapsed_s = drained(hub, "noop", before + result.requests, start, timeout_s=300)
    return result, (count - before) / elapsed_s


def distributed(ctx: Context) -> None:
    from tests.plugins.distributed import Deployment, controller_apihost, deployment_env  # the test setup's roles
    from tests.plugins.services import KAFKA_KEY, PG_URL_KEY, create_database, drop_database, service_setting

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
        print("  starting controller, 1 worker, 1 invoker (PostgreSQL, Kafka) ...", flush=True)
        controller = deployment.start("controller")
        deployment.start("worker")
        deployment.start("invoker", "--id", "0")
        auth = deployment.credentials["guest"]
        hub = systems.Hub(controller.pid, controller_apihost(controller),
                          "Basic " + base64.b64encode(auth.encode()).decode(), root)
        invokers_up(hub, 1)
        hub.must("PUT", "actions/noop", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
        warm(hub, "noop")
        hub.must("PUT", "triggers/hot", {})
        hub.must("PUT", "rules/on-hot", {"trigger": "hot", "action": "noop"})
        _, one_each = hot_trigger_rate(hub, ctx, "hot")
        print(f"  one hot trigger, 1 worker + 1 invoker: {one_each:.0f} fires/s end to end", flush=True)
        print("  adding a worker and an invoker ...", flush=True)
        deployment.start("worker")
        deployment.start("invoker", "--id", "1")
        invokers_up(hub, 2)
        warm(hub, "noop")
        sequential = wrk(f"{hub.api}/actions/noop?blocking=true&result=true", duration_s=ctx.sizes.wrk_s,
                         headers={"Authorization": hub.auth_header})
        concurrent = wrk(f"{hub.api}/actions/noop?blocking=true&result=true", connections=CONCURRENCY,
                         duration_s=ctx.sizes.wrk_s, headers={"Authorization": hub.auth_header})
        ctx.add(Row("invoke.distributed", "triggerhub", "wrk POST /actions/noop?blocking=true&result=true on the "
                    "controller -> Kafka -> invoker (process runtime) -> PostgreSQL -> Kafka -> controller -> 200 "
                    "read; 2 invokers", p50_ms=round(sequential.p50_ms, 3), p99_ms=round(sequential.p99_ms, 3),
                    latency_samples=sequential.requests, rate_per_s=round(concurrent.rate_per_s, 1),
                    rate_samples=concurrent.requests, floor="floor.unix"))
        result, two_each = hot_trigger_rate(hub, ctx, "hot")
        ctx.add(Row("fires.distributed", "triggerhub", "wrk POST /triggers/hot (one trigger, rule -> noop) at 16 "
                    "connections on the controller: first fire -> last action record stored (PostgreSQL); 2 workers "
                    "+ 2 invokers, and 1 + 1 before them", p50_ms=round(result.p50_ms, 3),
                    p99_ms=round(result.p99_ms, 3), latency_samples=result.requests, rate_per_s=round(two_each, 1),
                    rate_samples=result.requests, floor="floor.aiohttp",
                    values={"rate_1_worker_1_invoker_per_s": round(one_each, 1),
                            "accepted_rate_per_s": round(result.rate_per_s, 1)}))
    finally:
        deployment.stop_all()
        drop_database(pg_admin, url)


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


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "floor.aiohttp": floor_scenario("floor.aiohttp"),
    "floor.unix": floor_scenario("floor.unix"),
    "floor.mqtt": floor_scenario("floor.mqtt"),
    "floor.docker_run": floor_scenario("floor.docker_run"),
    "rss": rss,
    "invoke.process": invoke_process,
    "sequence": sequence,
    "fires.one": fires_one,
    "fires.many": fires_many,
    "webhook": webhook,
    "http_function": http_function,
    "mqtt.stored": mqtt_stored,
    "mqtt.reply": mqtt_reply,
    "invoke.docker": invoke_docker,
    "docker.cold": docker_cold,
    "docker.prewarmed": docker_prewarmed,
    "distributed": distributed,
}
