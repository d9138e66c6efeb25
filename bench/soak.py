"""Soak and chaos run of distributed mode: mixed load while processes are killed and services restarted.

    nice python bench/soak.py [--duration-s 300] [--rate-per-s 6] [--chaos-every-s 20] [--quiet-s 10]
                              [--https] [--steps ...] [--logs DIR] [--keep-services]

Starts PRIVATE Kafka, Mosquitto and PostgreSQL instances through scripts/services/*.sh (state under
--services-dir, ports --kafka-port 29092, --kafka-controller-port 29093, --mqtt-port 18931,
--pg-port 55632 by default: never the shared ones the tests use; stopped at the end),
then a controller, a worker, a feeds process and two invokers (process runtime) on loopback. Two
namespaces (`guest`, and `soak2` made with `triggerhub admin user create`) each get an action `rec` (returns its
arguments), a trigger fired through the API, a webhook-fed trigger and an MQTT-fed trigger, each
with a rule to `rec`. For --duration-s (at most 600) the script sends fires, non-blocking invokes,
webhook deliveries and QoS 1 MQTT messages, each carrying a unique `soak_id`, while it takes one
chaos step every --chaos-every-s, in turn: kill -9 the controller, the worker, invoker 0, the
feeds process, restart Kafka, Mosquitto, PostgreSQL, kill -9 invoker 1, and again (--steps picks
some). Every killed process is started again at once; the next step waits until it is back. The
load goes on until the last step is back, so every step is taken under load.

After the load it waits for quiescence: no new activation record or trigger event for --quiet-s
and no pending row. Then it counts, from the store:
  accepted   requests answered 202 (fire, invoke, webhook) or MQTT publishes PUBACKed by the broker
  completed  accepted soak ids with at least one `rec` record
  lost       accepted soak ids with no `rec` record
  doubled    soak ids with more than one `rec` record, or fires with more than one trigger record
  5xx        answers >= 500, expected when a 503 came while a chaos step was under way (or within
             EXPECTED_GRACE_S after it ended), unexpected otherwise
It exits 1 when anything was lost or doubled, a 5xx was unexpected, or quiescence never came.
Helpers: bench/soak_services.py (private services, MQTT publisher), bench/soak_ledger.py (ledger,
quiescence, counting, report).
Bounds: the load lasts --duration-s (at most 600) plus at most the chaos step under way then
(a Kafka restart takes ~35 s); set-up takes ~15 s, settling at most --settle-timeout-s (120).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak_ledger import Kind, Ledger, Sent, read_records, report, say, wait_quiescent  # noqa: E402
from soak_services import MqttPublisher, PrivateServices  # noqa: E402
from tests.plugins.cli import free_port  # noqa: E402
from tests.plugins.distributed import Deployment, HubProcess, deployment_env  # noqa: E402
from tests.plugins.services import KAFKA_KEY, MQTT_KEY, PG_URL_KEY, asyncpg_dsn, create_database, drop_database  # noqa: E402
from tests.plugins.tls import issue, make_ca  # noqa: E402

MAX_DURATION_S = 600.0
REQUEST_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 180.0
WARM_TIMEOUT_S = 180.0
MAX_IN_FLIGHT = 32
TOKEN = "soak-webhook-token"
SECOND_NAMESPACE = "soak2"
REC = "def main(args):\n    return args\n"
RELAXED = {"TRIGGERHUB_INVOCATIONS_PER_MINUTE": "10000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "10000000",
           "TRIGGERHUB_FIRES_PER_MINUTE": "10000000"}


# ---------------------------------------------------------------- the hub


@dataclass
class Hub:
    deployment: Deployment
    apihost: str
    auths: dict[str, str]  # namespace -> uuid:key
    roles: dict[str, HubProcess] = field(default_factory=dict)

    def start(self, role: str) -> HubProcess:
        command, *args = role.split(" ")
        if command == "invoker":
            args = ["--id", args[0]]
        process = self.deployment.start(command, *args, wait_ready=False)
        self.roles[role] = process
        return process

    def wait_ready(self, role: str) -> None:
        self.deployment.wait_ready(self.roles[role], READY_TIMEOUT_S)


def headers(auth: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode(), "Content-Type": "application/json"}


async def call(session: aiohttp.ClientSession, hub: Hub, namespace: str, method: str, path: str,
               body: Any = None, **query: str) -> tuple[int, Any]:
    async with session.request(method, f"{hub.apihost}/api/v1/{path}", json=body, params=query,
                               headers=headers(hub.auths[namespace])) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text and response.content_type.endswith("json") else text)


async def must(session: aiohttp.ClientSession, hub: Hub, namespace: str, method: str, path: str,
               body: Any = None, **query: str) -> Any:
    status, answer = await call(session, hub, namespace, method, path, body, **query)
    if status >= 300:
        raise SystemExit(f"set-up: {method} {path} as {namespace} answered {status}: {answer}")
    return answer


async def wait_invokers_up(session: aiohttp.ClientSession, hub: Hub, count: int) -> None:
    async with asyncio.timeout(READY_TIMEOUT_S):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{hub.apihost}/invokers") as response:
                    states = await response.json()
                async with session.get(f"{hub.apihost}/invokers/statistics") as response:
                    statistics = await response.json()
                up = [name for name, state in states.items() if state == "up"]
                if len(up) >= count and all(statistics.get(n, {}).get("partitions", 0) > 0 for n in up):
                    return
            await asyncio.sleep(0.5)


def second_namespace(deployment: Deployment) -> str:
    """`soak2`'s uuid:key, made as an operator makes one: `triggerhub admin user create soak2`."""
    made = subprocess.run([sys.executable, "-m", "triggerhub.cli", "admin", "user", "create", SECOND_NAMESPACE],
                          env={**os.environ, **deployment.env}, capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise SystemExit(f"triggerhub admin user create {SECOND_NAMESPACE} failed: {made.stderr}")
    return made.stdout.strip()


async def deploy_entities(session: aiohttp.ClientSession, hub: Hub, mqtt_url: str) -> None:
    for namespace in hub.auths:
        await must(session, hub, namespace, "PUT", "namespaces/_/actions/rec",
                   {"exec": {"kind": "python:default", "code": REC}})
        for trigger, feed in (("t-fire", None), ("t-hook", "/whisk.system/webhook/webhook"),
                              ("t-mqtt", "/whisk.system/mqtt/subscribe")):
            annotations = [{"key": "feed", "value": feed}] if feed else []
            await must(session, hub, namespace, "PUT", f"namespaces/_/triggers/{trigger}", {"annotations": annotations})
            await must(session, hub, namespace, "PUT", f"namespaces/_/rules/r-{trigger}",
                       {"trigger": trigger, "action": "rec"})
        lifecycle = {"lifecycleEvent": "CREATE", "authKey": hub.auths[namespace]}
        await must(session, hub, namespace, "POST", "namespaces/whisk.system/actions/webhook/webhook",
                   {**lifecycle, "triggerName": "/_/t-hook", "verify": "token", "secret": TOKEN}, blocking="true")
        await must(session, hub, namespace, "POST", "namespaces/whisk.system/actions/mqtt/subscribe",
                   {**lifecycle, "triggerName": "/_/t-mqtt", "url": mqtt_url, "topics": [f"soak/{namespace}/#"],
                    "qos": 1}, blocking="true")


# ---------------------------------------------------------------- load


async def send(kind: Kind, namespace: str, soak_id: str, session: aiohttp.ClientSession, hub: Hub,
               publisher: MqttPublisher, ledger: Ledger) -> None:
    entry = ledger.sent[soak_id] = Sent(kind, namespace)
    payload = {"soak_id": soak_id}
    if kind is Kind.MQTT:
        # guest's messages carry a CloudEvents id (user property); soak2's do not (packet-id dedup).
        message_id = soak_id if namespace == "guest" else None
        entry.accepted = await asyncio.to_thread(publisher.publish, f"soak/{namespace}/dev", json.dumps(payload).encode(),
                                                 message_id)
        entry.detail = "" if entry.accepted else "no PUBACK"
        return
    try:
        if kind is Kind.HOOK:
            async with session.post(f"{hub.apihost}/hooks/{namespace}/t-hook", json=payload,
                                    headers={"X-Webhook-Token": TOKEN}) as response:
                entry.status, entry.detail = response.status, (await response.text())[:200]
        else:
            path = "namespaces/_/triggers/t-fire" if kind is Kind.FIRE else "namespaces/_/actions/rec"
            status, answer = await call(session, hub, namespace, "POST", path, payload,
                                        **({"blocking": "false"} if kind is Kind.INVOKE else {}))
            entry.status, entry.detail = status, json.dumps(answer)[:200]
    except (aiohttp.ClientError, TimeoutError) as exc:
        entry.detail = type(exc).__name__
        return
    entry.accepted = entry.status == 202
    if entry.status is not None and entry.status >= 500:
        ledger.server_errors.append((time.monotonic(), soak_id, entry.status, entry.detail))


async def load(stop: asyncio.Event, rate_per_s: float, session: aiohttp.ClientSession, hub: Hub,
               publisher: MqttPublisher, ledger: Ledger) -> None:
    kinds, namespaces = list(Kind), list(hub.auths)
    limit = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(kind: Kind, namespace: str, soak_id: str) -> None:
        async with limit:
            await send(kind, namespace, soak_id, session, hub, publisher, ledger)

    async with asyncio.TaskGroup() as tasks:
        n = 0
        while not stop.is_set():
            kind, namespace = kinds[n % len(kinds)], namespaces[(n // len(kinds)) % len(namespaces)]
            tasks.create_task(one(kind, namespace, f"{kind}-{namespace}-{n}"))
            n += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1 / rate_per_s):
                    await stop.wait()


# ---------------------------------------------------------------- chaos


CHAOS = ("kill controller", "kill worker", "kill invoker 0", "kill feeds", "restart kafka", "restart mosquitto",
         "restart postgres", "kill invoker 1")


async def chaos_step(step: str, hub: Hub, services: PrivateServices, ledger: Ledger) -> None:
    verb, target = step.split(" ", 1)
    start = ledger.disrupted_since = time.monotonic()
    if verb == "kill":
        process = hub.roles[target]
        await asyncio.to_thread(process.kill)
        hub.start(target)
        await asyncio.to_thread(hub.wait_ready, target)
        what = f"kill -9 {target} (pid {process.pid}); started again as pid {hub.roles[target].pid}"
    else:
        await asyncio.to_thread(services.run, target, "stop")
        await asyncio.to_thread(services.run, target, "start")
        what = f"restart {target}"
    end = time.monotonic()
    ledger.disruptions.append((start, end))
    ledger.disrupted_since = None
    say(ledger, f"{what}: back in {end - start:.1f} s")


async def chaos(end: float, every_s: float, steps: tuple[str, ...], hub: Hub, services: PrivateServices,
                ledger: Ledger) -> int:
    """One step every `every_s` (after the previous one is back) while `end` is ahead; the number taken."""
    done = 0
    while time.monotonic() + every_s < end:
        await asyncio.sleep(every_s)
        await chaos_step(steps[done % len(steps)], hub, services, ledger)
        done += 1
    return done


# ---------------------------------------------------------------- the run


async def warm_up(session: aiohttp.ClientSession, hub: Hub, publisher: MqttPublisher, dsn: str, ledger: Ledger) -> None:
    """One of each kind per namespace, all recorded, before any chaos: the pipeline works."""
    warm = Ledger()
    for namespace in hub.auths:
        for kind in Kind:
            await send(kind, namespace, f"warm-{kind}-{namespace}", session, hub, publisher, warm)
    refused = {s: (e.status, e.detail) for s, e in warm.sent.items() if not e.accepted}
    if refused:
        raise SystemExit(f"warm-up: not accepted: {refused}")
    deadline = time.monotonic() + WARM_TIMEOUT_S
    while missing := [s for s in warm.sent if not (await read_records(dsn)).rec.get(s)]:
        if time.monotonic() > deadline:
            raise SystemExit(f"warm-up: no `rec` record within {WARM_TIMEOUT_S:.0f} s for {missing}")
        await asyncio.sleep(0.5)
    say(ledger, f"warm-up: {len(warm.sent)} events of 4 kinds in 2 namespaces all recorded")


@contextlib.asynccontextmanager
async def running_hub(deployment: Deployment, port: int, *, scheme: str) -> AsyncIterator[Hub]:
    hub = Hub(deployment, f"{scheme}://127.0.0.1:{port}", {})
    for role in ("controller", "worker", "feeds", "invoker 0", "invoker 1"):
        hub.start(role)
    for role in list(hub.roles):
        await asyncio.to_thread(hub.wait_ready, role)
    hub.auths = {"guest": deployment.credentials["guest"], SECOND_NAMESPACE: second_namespace(deployment)}
    yield hub


async def soak(args: argparse.Namespace, services: PrivateServices, settings: dict[str, str], root: Path) -> int:
    pg_admin, kafka, mqtt = settings[PG_URL_KEY], settings[KAFKA_KEY], settings[MQTT_KEY]
    url = create_database(pg_admin, "th_soak")
    dsn = asyncpg_dsn(url)
    port = free_port()
    tls: dict[str, str] = {}
    connector: aiohttp.TCPConnector | None = None
    if args.https:  # the controller serves HTTPS with a certificate of a CA made for this run
        (root / "tls").mkdir(exist_ok=True)
        ca = make_ca(root / "tls", "soak-ca")
        served = issue(root / "tls", ca, "controller")
        tls = {"TRIGGERHUB_TLS_CERT": str(served.cert), "TRIGGERHUB_TLS_KEY": str(served.key)}
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca.cert))
    deployment = Deployment(root, deployment_env(url, kafka, root / "home", TRIGGERHUB_PORT=str(port), **RELAXED,
                                                 **tls))
    ledger = Ledger()
    host, mqtt_port = mqtt.rsplit(":", 1)
    publisher = MqttPublisher(host, int(mqtt_port))
    try:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with (running_hub(deployment, port, scheme="https" if tls else "http") as hub,
                    aiohttp.ClientSession(timeout=timeout, connector=connector) as session):
            await wait_invokers_up(session, hub, 2)
            await deploy_entities(session, hub, f"mqtt://{mqtt}")
            await warm_up(session, hub, publisher, dsn, ledger)
            say(ledger, f"load on {hub.apihost} for {args.duration_s:.0f} s at {args.rate_per_s}/s over {len(Kind)} kinds and "
                        f"namespaces {', '.join(hub.auths)}; a chaos step every {args.chaos_every_s:.0f} s")
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(load(stop, args.rate_per_s, session, hub, publisher, ledger))
                # The load lasts --duration-s, and longer if a chaos step is still under way then:
                # every step is taken under load.
                end = time.monotonic() + args.duration_s
                steps = await chaos(end, args.chaos_every_s, tuple(args.steps.split(",")), hub, services, ledger)
                await asyncio.sleep(max(0.0, end - time.monotonic()))
                stop.set()
            say(ledger, f"load done: {len(ledger.sent)} sent, {steps} chaos steps; waiting for quiescence "
                        f"(no new record for {args.quiet_s:.0f} s, no pending row)")
            settled_s = await wait_quiescent(dsn, args.quiet_s, args.settle_timeout_s, ledger)
            if settled_s is None:
                say(ledger, f"NOT quiescent within {args.settle_timeout_s:.0f} s; counting what is there")
            else:
                say(ledger, f"quiescent after {settled_s:.1f} s")
            totals = report(ledger, await read_records(dsn))
            print(f"accepted {totals.get('accepted', 0)}, completed {totals.get('completed', 0)}, "
                  f"lost {totals.get('lost', 0)}, doubled {totals.get('doubled', 0)}, "
                  f"unexpected 5xx {totals.get('5xx_unexpected', 0)} (expected 5xx {totals.get('5xx_expected', 0)})")
            failed = settled_s is None or any(totals.get(k, 0) for k in ("lost", "doubled", "5xx_unexpected"))
            return 1 if failed else 0
    finally:
        publisher.close()
        deployment.stop_all()
        with contextlib.suppress(SystemExit):
            drop_database(pg_admin, url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=300.0, help=f"load duration (at most {MAX_DURATION_S:.0f})")
    parser.add_argument("--rate-per-s", type=float, default=6.0, help="operations started per second")
    parser.add_argument("--chaos-every-s", type=float, default=20.0, help="seconds between chaos steps")
    parser.add_argument("--steps", default=",".join(CHAOS), help="chaos steps, in turn (comma-separated)")
    parser.add_argument("--quiet-s", type=float, default=10.0, help="quiescence: no new record for this long")
    parser.add_argument("--settle-timeout-s", type=float, default=120.0, help="give up waiting for quiescence after this long")
    parser.add_argument("--services-dir", type=Path, default=Path(tempfile.gettempdir()) / "th-soak-services")
    parser.add_argument("--https", action="store_true",
                        help="the controller serves HTTPS (API and webhooks) with a certificate of a CA made for the run")
    parser.add_argument("--kafka-port", type=int, default=29092)
    parser.add_argument("--kafka-controller-port", type=int, default=29093)
    parser.add_argument("--pg-port", type=int, default=55632)
    parser.add_argument("--mqtt-port", type=int, default=18931)
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs in this directory")
    parser.add_argument("--keep-services", action="store_true", help="leave the private services running")
    args = parser.parse_args(argv)
    if not 0 < args.duration_s <= MAX_DURATION_S:
        parser.error(f"--duration-s {args.duration_s}: must be in (0, {MAX_DURATION_S:.0f}]")
    unknown = [s for s in args.steps.split(",") if s not in CHAOS]
    if unknown:
        parser.error(f"--steps: unknown {unknown}; known: {', '.join(CHAOS)}")
    services = PrivateServices(args.services_dir, {
        "TH_SVC_KAFKA_PORT": str(args.kafka_port), "TH_SVC_KAFKA_CONTROLLER_PORT": str(args.kafka_controller_port),
        "TH_SVC_PG_PORT": str(args.pg_port), "TH_SVC_MQTT_PORT": str(args.mqtt_port)})
    settings = services.start_all()
    try:
        with tempfile.TemporaryDirectory(prefix="th-soak-") as scratch:
            root = args.logs or Path(scratch)
            root.mkdir(parents=True, exist_ok=True)
            return asyncio.run(soak(args, services, settings, root))
    finally:
        if not args.keep_services:
            services.stop_all()


if __name__ == "__main__":
    sys.exit(main())
