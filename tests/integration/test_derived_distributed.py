"""Derived triggers in distributed mode (controller, worker and two invokers as processes, Kafka
and PostgreSQL): the worker is killed with -9 while devices are silent and while `sequence`
pairs are half seen; after quiescence there is exactly one alert per silent device and one
derived event per completed pair, with the keyed state in PostgreSQL rows or in the workers'
Faust table (TRIGGERHUB_DERIVE_STATE; the table's own tests are test_derived_table.py). And at full scale over the real Mosquitto,
with the `feeds` process matching the heartbeats: 100 devices, 10 of which stop, the worker
killed (-9) while they are silent -> exactly 10 absences."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import uuid

import pytest

from tests.integration.test_distributed_faults import (  # noqa: F401  (fixtures)
    ApiClient, cluster, count_records, put_action, store,
)
from tests.integration.test_rule_routing_mqtt import publisher, subscribe_feed
from tests.plugins.distributed import Deployment
from tests.plugins.waiting import wait_quiet, wait_until
from triggerhub.store.sql import SqlStore

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
ECHO = "def main(args):\n    return args\n"
DEVICES = 20
SILENT = 4
FOR_S = 6
BEAT_S = 2.0  # 10 fires a second: a loaded 2-core machine's worker keeps up


async def put(client: ApiClient, path: str, body: object) -> None:
    status, answer = await client.call("PUT", f"namespaces/_/{path}", body)
    assert status == 200, answer


async def beat(client: ApiClient, devices: list[str], silent: set[str], rounds_before_stop: int,
               stop: asyncio.Event, rounds: list[int]) -> None:
    """Each device fires the heartbeat each BEAT_S; the silent ones stop after a few rounds."""
    while not stop.is_set():
        live = [d for d in devices if rounds[0] < rounds_before_stop or d not in silent]
        answers = await asyncio.gather(*(client.call("POST", "namespaces/_/triggers/heartbeat", {"deviceId": d})
                                         for d in live))
        assert [status for status, _ in answers] == [202] * len(live), answers
        rounds[0] += 1
        try:
            async with asyncio.timeout(BEAT_S):
                await stop.wait()
        except TimeoutError:
            pass


@pytest.fixture(params=["store", "table"])
def derive_state(request: pytest.FixtureRequest, deployment: Deployment) -> str:
    """Where every process keeps derived state; requested before `cluster`, which starts them."""
    deployment.env["TRIGGERHUB_DERIVE_STATE"] = request.param
    return str(request.param)


async def test_worker_kill9_changes_no_absence_and_no_sequence(derive_state, cluster, deployment,
                                                               store: SqlStore) -> None:
    """The restarted worker joins while the killed one is still a member of the group (its session
    has not expired yet)."""
    client, processes = cluster
    await put_action(client, "alert", ECHO)
    for name in ("heartbeat", "door", "badge"):
        await put(client, f"triggers/{name}", {})
    await put(client, "triggers/silent", {"derive": {"kind": "absence", "from": "heartbeat",
                                                     "key": "$.data.deviceId", "forS": FOR_S}})
    await put(client, "triggers/entry", {"derive": {"kind": "sequence", "from": ["door", "badge"],
                                                    "key": "$.data.deviceId", "windowS": 60}})
    await put(client, "rules/alert-silent", {"trigger": "silent", "action": "alert"})
    await put(client, "rules/alert-entry", {"trigger": "entry", "action": "alert"})

    devices = [f"dev-{i:02d}" for i in range(DEVICES)]
    silent = set(devices[::DEVICES // SILENT])
    stop, rounds = asyncio.Event(), [0]
    beating = asyncio.create_task(beat(client, devices, silent, 3, stop, rounds))
    try:
        await wait_until(lambda: rounds[0] >= 3, timeout_s=60)
        for device in devices[:10]:  # doors now, badges after the kill: pairs across the crash
            assert (await client.call("POST", "namespaces/_/triggers/door", {"deviceId": device}))[0] == 202
        processes["worker"].kill(signal.SIGKILL)
        for device in devices[:10]:
            assert (await client.call("POST", "namespaces/_/triggers/badge", {"deviceId": device}))[0] == 202
        processes["worker"] = await asyncio.to_thread(deployment.start, "worker")

        async def observe() -> tuple[int, int, int]:
            return (await count_records(client, "alert"), len(await store.list_pending()),
                    len(await store.list_derived_outbox(limit=100)))

        seen = await wait_quiet(observe, lambda s: s[1:] == (0, 0) and s[0] >= SILENT + 10,
                                quiet_s=2 * FOR_S + 1, timeout_s=150)
        assert not beating.done(), "the live devices kept beating all along"
    finally:
        stop.set()
        await beating
    status, records = await client.call("GET", "namespaces/_/activations", name="alert", docs=True, limit=200)
    assert status == 200, records
    derived = sorted((r["response"]["result"]["kind"], r["response"]["result"]["key"]) for r in records)
    assert derived == sorted([("absence", d) for d in silent] + [("sequence", d) for d in devices[:10]])
    assert seen == (SILENT + 10, 0, 0)
    assert await store.count_events("/guest/silent") == SILENT
    assert await store.count_events("/guest/entry") == 10


MQTT_DEVICES = 100
MQTT_SILENT = 10
MQTT_FOR_S = 8
MQTT_BEAT_S = 2.0  # 50 heartbeats a second for the feeds process


def heartbeats(broker: tuple[str, int], topic: str, devices: list[str], silent: set[str], rounds_before_stop: int,
               stop: threading.Event, rounds: list[int]) -> None:
    """Every device beats each MQTT_BEAT_S (QoS 1, each PUBACK awaited); the `silent` ones stop
    after `rounds_before_stop` rounds."""
    client = publisher(broker)
    try:
        while not stop.is_set():
            infos = [client.publish(topic, json.dumps({"deviceId": d, "beat": rounds[0]}), qos=1)
                     for d in devices if rounds[0] < rounds_before_stop or d not in silent]
            for info in infos:
                info.wait_for_publish(timeout=30)
            rounds[0] += 1
            stop.wait(MQTT_BEAT_S)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.mqtt
async def test_absence_of_10_of_100_mqtt_devices_survives_a_worker_kill9(cluster, deployment, store: SqlStore,
                                                                         mqtt_broker) -> None:
    client, processes = cluster
    processes["feeds"] = await asyncio.to_thread(deployment.start, "feeds")
    prefix = f"t14d-{uuid.uuid4().hex[:8]}"
    await put_action(client, "alert", ECHO)
    await put(client, "triggers/heartbeat", {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]})
    await put(client, "triggers/silent", {"derive": {"kind": "absence", "from": "heartbeat",
                                                     "key": "$.data.deviceId", "forS": MQTT_FOR_S}})
    await put(client, "rules/alert-silent", {"trigger": "silent", "action": "alert"})
    await subscribe_feed(client, "heartbeat", mqtt_broker, f"{prefix}/heartbeat", f"c-{prefix}")  # type: ignore[arg-type]

    devices = [f"dev-{i:03d}" for i in range(MQTT_DEVICES)]
    silent = set(devices[::MQTT_DEVICES // MQTT_SILENT])
    stop, rounds = threading.Event(), [0]
    beating = asyncio.create_task(asyncio.to_thread(heartbeats, mqtt_broker, f"{prefix}/heartbeat", devices, silent,
                                                    3, stop, rounds))
    try:
        # All 100 heard (3 rounds), then the 10 fall silent: the worker dies during their silence.
        await wait_until(lambda: rounds[0] >= 4, timeout_s=60)
        assert await count_records(client, "alert") == 0, "no silence is over yet"
        processes["worker"].kill(signal.SIGKILL)
        processes["worker"] = await asyncio.to_thread(deployment.start, "worker")

        # Behaviour only (however the state is kept): alerts, and accepted invocations still to run.
        async def observe() -> tuple[int, int]:
            return await count_records(client, "alert"), len(await store.list_pending())

        seen = await wait_quiet(observe, lambda s: s[1] == 0 and s[0] >= MQTT_SILENT,
                                quiet_s=MQTT_FOR_S + 2, timeout_s=150)
        assert not beating.done(), "the 90 live devices kept beating all along"
    finally:
        stop.set()
        await beating
    status, records = await client.call("GET", "namespaces/_/activations", name="alert", docs=True, limit=200)
    assert status == 200, records
    assert sorted(r["response"]["result"]["key"] for r in records) == sorted(silent)
    assert {r["response"]["result"]["kind"] for r in records} == {"absence"}
    assert seen == (MQTT_SILENT, 0)
    assert await store.count_events("/guest/silent") == MQTT_SILENT
