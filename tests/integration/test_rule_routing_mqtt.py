"""Rules that filter MQTT readings, end to end on the real Mosquitto with an embedded hub: only
matching readings become activations, with the transformed parameters; explain names the clause;
the example manifest keeps up with a sensor at 50 readings/s under the default limits."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.e2e.test_api_actions import put_action
from tests.plugins.hub import HubClient
from tests.plugins.waiting import wait_quiet
from triggerhub.manifests.client import HttpWhiskClient
from triggerhub.manifests.deployer import deploy_manifest
from triggerhub.rules.match import compile_routing
from triggerhub.store.base import ActivationQuery

pytestmark = pytest.mark.mqtt
ECHO = "def main(args):\n    return args\n"
HOT = {"data": {"temp": [{"numeric": [">", 30]}]}}
SHAPE = {"celsius": "$.data.temp", "sensor": "$.subject"}
EXAMPLE = Path(__file__).parents[2] / "manifests" / "iot-temperature-alert"
QUIET_S = 2.0


def reading(i: int) -> float:
    """10,000 readings spread over 0.00 .. 32.99 °C; about one in eleven is above 30."""
    return (i * 7919) % 3300 / 100


def publisher(broker: tuple[str, int]) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect(*broker)
    client.loop_start()
    return client


def publish_all(broker: tuple[str, int], messages: list[tuple[str, object, str | None]]) -> None:
    """QoS 1, waiting for every PUBACK; a message with an id carries it as the CloudEvents `id` property."""
    client = publisher(broker)
    try:
        infos = []
        for topic, body, event_id in messages:
            props = None
            if event_id is not None:
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = ("id", event_id)
            infos.append(client.publish(topic, json.dumps(body), qos=1, properties=props))
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        client.loop_stop()


async def subscribe_feed(hub: HubClient, trigger: str, broker: tuple[str, int], topics: str, client_id: str) -> None:
    status, body = await hub.call("POST", "namespaces/whisk.system/actions/mqtt/subscribe", {
        "lifecycleEvent": "CREATE", "triggerName": f"/_/{trigger}", "authKey": hub.auth,
        "url": f"mqtt://{broker[0]}:{broker[1]}", "topics": topics, "qos": 1, "clientId": client_id}, blocking=True)
    assert status == 200, body


async def quiescent_records(hub: HubClient, name: str, expected: int, timeout_s: float) -> list:
    """The action's records once there are `expected`, none arrived for QUIET_S and nothing is pending."""
    store = hub.hub.engine.store
    query = ActivationQuery(namespace="guest", name=name, limit=100_000)

    async def observe() -> tuple[int, int]:  # (records, pending rows)
        return await store.count_activations(query), len(await store.list_pending())

    await wait_quiet(observe, lambda seen: seen[0] >= expected and seen[1] == 0, quiet_s=QUIET_S,
                     timeout_s=timeout_s)
    return await store.list_activations(query)


async def test_ten_thousand_readings_only_the_hot_ones_run_with_transformed_parameters(hub, mqtt_broker):
    prefix = f"t13-{uuid.uuid4().hex[:8]}"
    await put_action(hub, "echo", ECHO, "python:default")
    status, body = await hub.call("PUT", "namespaces/_/triggers/readings",
                                  {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]})
    assert status == 200, body
    status, body = await hub.call("PUT", "namespaces/_/rules/hot", {"trigger": "readings", "action": "echo",
                                                                  "filter": HOT, "transform": SHAPE})
    assert status == 200, body
    await subscribe_feed(hub, "readings", mqtt_broker, f"{prefix}/+/temperature", f"c-{prefix}")

    messages = [(f"{prefix}/s{i % 10}/temperature", {"temp": reading(i)}, f"{prefix}-{i}" if i < 2 else None)
                for i in range(10_000)]
    hot = sorted((topic, body["temp"]) for topic, body, _ in messages if body["temp"] > 30)
    assert 800 < len(hot) < 1_000 and reading(0) <= 30 and reading(1) <= 30
    await asyncio.to_thread(publish_all, mqtt_broker, messages)

    records = await quiescent_records(hub, "echo", len(hot), timeout_s=240)
    assert sorted((r.response.result["sensor"], r.response.result["celsius"]) for r in records) == hot
    assert all(set(r.response.result) == {"sensor", "celsius"} for r in records)
    assert {a.key for a in records[0].annotations} >= {"rule", "event"}
    assert next(a.value for a in records[0].annotations if a.key == "rule") == "guest/hot"
    store = hub.hub.engine.store
    assert await store.count_events("/guest/readings") == 10_000
    assert await store.count_activations(ActivationQuery(namespace="guest", name="readings")) == len(hot)

    status, trace = await hub.call("POST", "namespaces/_/rules/hot/explain", {"eventId": f"mqtt:ce:{prefix}-1"})
    assert status == 200, trace
    assert trace["matched"] is False
    assert trace["clauses"] == [{"path": "$.data.temp", "value": reading(1), "present": True, "matched": False,
                                 "test": [{"numeric": [">", 30]}]}]
    assert trace["params"] == {"celsius": reading(1), "sensor": f"{prefix}/s1/temperature"}
    assert [(r["rule"], r["outcome"]) for r in trace["rules"]] == [("guest/hot", "filtered")]
    status, rule = await hub.call("GET", "namespaces/_/rules/hot")
    assert rule["counts"] == {"matched": len(hot), "filtered": 10_000 - len(hot)}


@pytest.mark.slow
async def test_the_example_manifest_keeps_up_with_50_readings_a_second_for_a_minute(hub, mqtt_broker, tmp_path):
    """Default settings: OpenWhisk's 60 fires and invokes a minute would throttle this at once."""
    prefix = f"t13-{uuid.uuid4().hex[:8]}"
    project = tmp_path / "iot-temperature-alert"
    shutil.copytree(EXAMPLE, project)
    manifest = project / "manifest.yaml"
    text = manifest.read_text()
    for old, new in (("mqtt://127.0.0.1:1883", f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}"),
                     ("topics: [sensors/+/temperature]", f"topics: [{prefix}/+/temperature]\n            clientId: c-{prefix}")):
        assert old in text
        text = text.replace(old, new)
    manifest.write_text(text)
    async with HttpWhiskClient(hub.apihost, hub.auth) as client:
        await deploy_manifest(client, manifest, check_routing=compile_routing)

    readings = [(f"{prefix}/s{i % 5}/temperature", {"celsius": 20 + (i * 37) % 150 / 10}) for i in range(3_000)]
    hot = sorted((topic, body["celsius"]) for topic, body in readings if body["celsius"] > 30)

    def sensor() -> None:
        client = publisher(mqtt_broker)
        try:
            infos, start = [], time.monotonic()
            for i, (topic, body) in enumerate(readings):
                delay = start + i / 50 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                infos.append(client.publish(topic, json.dumps(body), qos=1))
            for info in infos:
                info.wait_for_publish(timeout=60)
        finally:
            client.disconnect()
            client.loop_stop()

    await asyncio.to_thread(sensor)
    records = await quiescent_records(hub, "iot/check-temperature", len(hot), timeout_s=60)
    assert sorted((f"{prefix}/{r.response.result['sensor']}/temperature", r.response.result["celsius"])
                  for r in records) == hot
    assert all(r.response.result["alert"] is True for r in records)
    triggers = await hub.hub.engine.store.list_activations(
        ActivationQuery(namespace="guest", name="temperature-reading", limit=100_000))
    outcomes = [json.loads(line) for record in triggers for line in record.logs]
    assert len(outcomes) == len(hot) and all(o["success"] for o in outcomes)  # none throttled


async def test_a_full_hub_holds_the_feed_back_instead_of_dropping_readings(mqtt_broker, tmp_path):
    """Two feed activations at a time: the feed stops acknowledging until one ends; all arrive."""
    import aiohttp

    from tests.plugins.hub import hub_config
    from triggerhub.cli.compose import running_hub
    from triggerhub.invoker.process import ProcessRuntimeFactory

    config = hub_config(tmp_path / "home", TRIGGERHUB_FEED_CONCURRENT_ACTIVATIONS="2")
    async with running_hub(config, runtime=ProcessRuntimeFactory(), runtime_name="process") as running, \
            aiohttp.ClientSession() as session:
        hub = HubClient(running, session)
        prefix = f"t13-{uuid.uuid4().hex[:8]}"
        await put_action(hub, "slow", "import time\ndef main(args):\n    time.sleep(0.2)\n    return args\n",
                         "python:default")
        status, body = await hub.call("PUT", "namespaces/_/triggers/readings",
                                      {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]})
        assert status == 200, body
        status, body = await hub.call("PUT", "namespaces/_/rules/hot", {"trigger": "readings", "action": "slow", "filter": HOT})
        assert status == 200, body
        await subscribe_feed(hub, "readings", mqtt_broker, f"{prefix}/+/temperature", f"c-{prefix}")
        await asyncio.to_thread(publish_all, mqtt_broker,
                                [(f"{prefix}/s/temperature", {"temp": 31 + i}, None) for i in range(20)])
        records = await quiescent_records(hub, "slow", 20, timeout_s=60)
    assert sorted(r.response.result["payload"]["temp"] for r in records) == [31 + i for i in range(20)]
    edges = sorted([(r.start_ms, 1) for r in records] + [(r.end_ms, -1) for r in records])
    running_at_once = max(sum(step for _, step in edges[:i + 1]) for i in range(len(edges)))
    assert running_at_once <= 2
