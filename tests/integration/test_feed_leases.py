"""Feeds shared among several `triggerhub feeds` processes by leases in PostgreSQL.

Thirty feeds (MQTT, Kafka topic, alarm) over three feeds processes: they spread ten each, a
`kill -9` of one moves its feeds to the survivors once its leases expire, and after quiescence
every MQTT message and Kafka record is stored exactly once per feed, every alarm second exactly
once, and the feed counters in the store match what each feed stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import paho.mqtt.client as paho
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from paho.mqtt.enums import CallbackAPIVersion

from tests.plugins.distributed import ApiClient, Deployment, HubProcess, api_client
from tests.plugins.services import asyncpg_dsn
from tests.plugins.waiting import wait_quiet

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
log = logging.getLogger(__name__)

LEASE_MS, RENEW_MS = 4000, 1000
LEASES = {"TRIGGERHUB_FEED_LEASE_MS": str(LEASE_MS), "TRIGGERHUB_FEED_LEASE_RENEW_MS": str(RENEW_MS),
          "TRIGGERHUB_FEED_EVENTS_PER_MINUTE": "600000"}
KINDS = ("mqtt", "kafka", "alarm")
FEED_COUNT = 30
ROUNDS = 150  # one MQTT message per MQTT feed and one Kafka record per round, every ROUND_S
ROUND_S = 0.1
KILL_AT_ROUND = 50
TIMEOUT_S = 90.0
KAFKA_SESSION_S = 10.0  # aiokafka's default consumer session timeout, used by the Kafka topic feed


def kind_of(name: str) -> str:
    return KINDS[int(name.removeprefix("feed")) % len(KINDS)]


async def feed_action(client: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    namespace, package, action = path.strip("/").split("/")
    status, record = await client.call("POST", f"namespaces/{namespace}/actions/{package}/{action}", body,
                                       blocking=True)
    assert status == 200, record
    result: dict[str, Any] = record["response"]["result"]
    return result


async def create_feeds(client: ApiClient, *, mqtt_url: str, mqtt_prefix: str, brokers: str,
                       topic: str) -> list[str]:
    names = [f"feed{i:02d}" for i in range(FEED_COUNT)]
    for name in names:
        kind = kind_of(name)
        path, params = {
            "mqtt": ("/whisk.system/mqtt/subscribe", {"url": mqtt_url, "topics": f"{mqtt_prefix}/{name}", "qos": 1}),
            "kafka": ("/whisk.system/kafka/consume", {"brokers": [brokers], "topics": [topic]}),
            "alarm": ("/whisk.system/alarms/alarm", {"cron": "* * * * * *", "catchUp": "all", "catchUpMax": 600}),
        }[kind]
        status, body = await client.call("PUT", f"namespaces/_/triggers/{name}",
                                         {"annotations": [{"key": "feed", "value": path}]})
        assert status == 200, body
        created = await feed_action(client, path, {"lifecycleEvent": "CREATE", "triggerName": f"/_/{name}",
                                                   "authKey": client.auth, **params})
        assert created["status"] == "active", created
    return names


async def leases(connection: asyncpg.Connection) -> dict[str, str]:
    """trigger -> owner of every unexpired lease."""
    rows = await connection.fetch(
        "SELECT trigger_fqn, owner FROM feed_leases "
        "WHERE expires_ms >= CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    return {row["trigger_fqn"]: row["owner"] for row in rows}


def owner_of(process: HubProcess, held: dict[str, str]) -> str:
    """The lease owner name of `process` (it carries the pid)."""
    (owner,) = {o for o in held.values() if f":{process.pid}:" in o}
    return owner


async def wait_spread(connection: asyncpg.Connection, processes: list[HubProcess]) -> dict[str, str]:
    """Until every feed has a lease and each of `processes` holds its fair share."""
    share = -(-FEED_COUNT // len(processes))
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            held = await leases(connection)
            per_pid = Counter(next((p.pid for p in processes if f":{p.pid}:" in o), 0) for o in held.values())
            if len(held) == FEED_COUNT and all(per_pid[p.pid] in (share, share - 1) for p in processes):
                return held
            await asyncio.sleep(0.1)


def publish_mqtt(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(host, port)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


async def stored(connection: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Each trigger's stored events (their docs)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for row in await connection.fetch("SELECT trigger_fqn, doc FROM events ORDER BY time_ms"):
        found.setdefault(row["trigger_fqn"].rsplit("/", 1)[-1], []).append(json.loads(row["doc"]))
    return found


def items(name: str, events: list[dict[str, Any]]) -> list[int]:
    """The round numbers an MQTT or Kafka feed stored, duplicates kept."""
    if kind_of(name) == "mqtt":
        return [int(e["data"]["payload"]["n"]) for e in events]
    return [int(json.loads(m["value"])["n"]) for e in events for m in e["data"]["messages"]]


async def test_thirty_feeds_over_three_processes_survive_a_kill(deployment: Deployment, mqtt_broker,
                                                               kafka_bootstrap) -> None:
    deployment.env.update(LEASES)
    controller = deployment.start("controller")
    first = deployment.start("feeds")
    topic, mqtt_prefix = f"leases-{uuid.uuid4().hex[:8]}", f"leases/{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    host, port = mqtt_broker
    connection = await asyncpg.connect(asyncpg_dsn(deployment.env["TRIGGERHUB_STORE_URL"]))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        async with api_client(deployment, controller) as client:
            names = await create_feeds(client, mqtt_url=f"mqtt://{host}:{port}", mqtt_prefix=mqtt_prefix,
                                       brokers=kafka_bootstrap, topic=topic)
            others = [deployment.start("feeds", wait_ready=False) for _ in range(2)]
            await asyncio.gather(*(asyncio.to_thread(deployment.wait_ready, p) for p in others))
            processes = [first, *others]
            before = await wait_spread(connection, processes)
            victim = first
            victim_owner = owner_of(victim, before)
            moved = sorted(t.rsplit("/", 1)[-1] for t, o in before.items() if o == victim_owner)
            assert {kind_of(name) for name in moved} == set(KINDS), moved

            async def taken_over() -> float:
                """Seconds from the kill until survivors hold every lease of the killed process."""
                killed_at = time.monotonic()
                async with asyncio.timeout(TIMEOUT_S):
                    while True:
                        held = await leases(connection)
                        if len(held) == FEED_COUNT and victim_owner not in held.values():
                            return time.monotonic() - killed_at
                        await asyncio.sleep(0.1)

            watcher: asyncio.Task[float] | None = None
            for n in range(ROUNDS):
                if n == KILL_AT_ROUND:
                    victim.kill(signal.SIGKILL)
                    watcher = asyncio.create_task(taken_over())
                    kill_ms = int(time.time() * 1000)
                payload = json.dumps({"n": n}).encode()
                await asyncio.to_thread(publish_mqtt, host, port, [
                    (f"{mqtt_prefix}/{name}", payload) for name in names if kind_of(name) == "mqtt"])
                await producer.send_and_wait(topic, payload, key=str(n).encode())
                await asyncio.sleep(ROUND_S)

            assert watcher is not None
            failover_s = await watcher
            log.info("failover: all %d feeds of the killed process held by survivors %.1f s after the kill "
                     "(lease %d ms, renewal %d ms)", len(moved), failover_s, LEASE_MS, RENEW_MS)
            # A lease is claimed once expired (LEASE_MS + a renewal round); a moved Kafka feed then
            # waits for its consumer group to evict the dead member (aiokafka's 10 s session).
            assert failover_s < max((LEASE_MS + 2 * RENEW_MS) / 1000, KAFKA_SESSION_S) + 5.0

            def done(seen: dict[str, list[dict[str, Any]]]) -> bool:
                return all(len(set(items(n, seen.get(n, [])))) == ROUNDS for n in names if kind_of(n) != "alarm")

            async def observe() -> dict[str, list[dict[str, Any]]]:
                seen = await stored(connection)
                return {n: sorted(e, key=lambda doc: doc["id"]) for n, e in seen.items() if kind_of(n) != "alarm"}

            try:
                settled = await wait_quiet(observe, done, quiet_s=3.0, timeout_s=TIMEOUT_S)
            except TimeoutError:
                seen = await observe()
                missing = {n: (len(items(n, seen.get(n, []))), sorted(set(range(ROUNDS)) - set(items(n, seen.get(n, [])))))
                           for n in names if kind_of(n) != "alarm"}
                raise AssertionError(f"not every message stored; moved: {moved}; (stored, missing): {missing}") from None
            doubled = {n: sorted((c, [e["id"] for e in settled[n] if c in items(n, [e])])
                                 for c, k in Counter(items(n, settled[n])).items() if k > 1)
                       for n in names if kind_of(n) != "alarm"}
            assert {n: d for n, d in doubled.items() if d} == {}, moved
            for name in names:
                if kind_of(name) != "alarm":
                    assert sorted(items(name, settled[name])) == list(range(ROUNDS)), name

            alarms = await stored(connection)
            for name in names:
                if kind_of(name) == "alarm":
                    instants = sorted(int(e["id"].rsplit(":", 1)[-1]) for e in alarms[name])
                    assert instants == list(range(instants[0], instants[-1] + 1000, 1000)), name  # no second missed
                    assert instants[-1] > kill_ms + LEASE_MS, name  # it went on after the kill

            # Counters: added to the store by every process every renewal interval. A feed that
            # never ran in the killed process counted exactly what it stored.
            await asyncio.sleep(2 * RENEW_MS / 1000)
            for name in names:
                if kind_of(name) == "alarm" or name in moved:
                    continue
                row = await connection.fetchrow("SELECT received, fired, rejected FROM feed_counts "
                                                "WHERE trigger_fqn = $1", f"/guest/{name}")
                assert row is not None, name
                assert row["fired"] == len(settled[name]), name
                assert row["received"] == row["fired"] + row["rejected"], name
            stayed = next(n for n in names if kind_of(n) == "mqtt" and n not in moved)
            read = await feed_action(client, "/whisk.system/mqtt/subscribe",
                                     {"lifecycleEvent": "READ", "triggerName": f"/_/{stayed}", "authKey": client.auth})
            assert read["metrics"]["fired"] == len(settled[stayed]) == ROUNDS
    finally:
        await producer.stop()
        await connection.close()


async def test_a_clean_shutdown_hands_its_feeds_over_at_once(deployment: Deployment) -> None:
    """Leases far longer than the test: the survivor can only hold the feeds this soon because the
    stopping process released them."""
    deployment.env.update({"TRIGGERHUB_FEED_LEASE_MS": "60000", "TRIGGERHUB_FEED_LEASE_RENEW_MS": "500"})
    controller = deployment.start("controller")
    first = deployment.start("feeds")
    connection = await asyncpg.connect(asyncpg_dsn(deployment.env["TRIGGERHUB_STORE_URL"]))
    try:
        async with api_client(deployment, controller) as client:
            names = [f"tick{i}" for i in range(4)]
            for name in names:
                status, body = await client.call("PUT", f"namespaces/_/triggers/{name}", {})
                assert status == 200, body
                created = await feed_action(client, "/whisk.system/alarms/alarm", {
                    "lifecycleEvent": "CREATE", "triggerName": f"/_/{name}", "authKey": client.auth,
                    "cron": "* * * * * *", "catchUp": "all", "catchUpMax": 600})
                assert created["status"] == "active", created
            second = deployment.start("feeds")
            async with asyncio.timeout(TIMEOUT_S):
                while sorted(Counter((await leases(connection)).values()).values()) != [2, 2]:
                    await asyncio.sleep(0.1)

            first.popen.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            async with asyncio.timeout(TIMEOUT_S):
                while set((await leases(connection)).values()) != {owner_of(second, await leases(connection))} \
                        or len(await leases(connection)) != len(names):
                    await asyncio.sleep(0.1)
            handed_s = time.monotonic() - stopped_at
            log.info("clean shutdown: the survivor held every feed %.1f s after SIGTERM", handed_s)
            assert handed_s < 10.0  # one renewal round after the release; the leases would last 60 s
            assert first.popen.wait(15) == 0
            await asyncio.sleep(2.0)  # two more instants, fired by the survivor
            events = await stored(connection)
            for name in names:
                instants = sorted(int(e["id"].rsplit(":", 1)[-1]) for e in events[name])
                assert instants == list(range(instants[0], instants[-1] + 1000, 1000)), name
    finally:
        await connection.close()


async def test_delete_handled_by_either_process_stops_the_feed_wherever_it_runs(deployment: Deployment) -> None:
    """Lifecycle calls reach whichever feeds process holds their Kafka partition; a DELETE there
    returns once the process running the feed has stopped it and let go of its lease."""
    deployment.env.update({"TRIGGERHUB_FEED_LEASE_MS": "60000", "TRIGGERHUB_FEED_LEASE_RENEW_MS": "500"})
    controller = deployment.start("controller")
    first = deployment.start("feeds")
    connection = await asyncpg.connect(asyncpg_dsn(deployment.env["TRIGGERHUB_STORE_URL"]))
    try:
        async with api_client(deployment, controller) as client:
            names = [f"tick{i}" for i in range(6)]
            for name in names:
                status, body = await client.call("PUT", f"namespaces/_/triggers/{name}", {})
                assert status == 200, body
                await feed_action(client, "/whisk.system/alarms/alarm", {
                    "lifecycleEvent": "CREATE", "triggerName": f"/_/{name}", "authKey": client.auth,
                    "cron": "* * * * * *"})
            deployment.start("feeds")
            async with asyncio.timeout(TIMEOUT_S):
                while sorted(Counter((await leases(connection)).values()).values()) != [3, 3]:
                    await asyncio.sleep(0.1)
            for name in names:
                deleted = await feed_action(client, "/whisk.system/alarms/alarm", {
                    "lifecycleEvent": "DELETE", "triggerName": f"/_/{name}", "authKey": client.auth})
                assert deleted == {"triggerName": f"/guest/{name}", "status": "deleted"}
            assert await leases(connection) == {}
            assert await connection.fetchval("SELECT count(*) FROM feeds") == 0

            async def fired() -> int:
                return int(await connection.fetchval("SELECT count(*) FROM events"))

            await wait_quiet(fired, lambda _: True, quiet_s=2.5, timeout_s=TIMEOUT_S)  # no second passes unfired
            assert first.popen.poll() is None
    finally:
        await connection.close()
