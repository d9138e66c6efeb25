"""Derived triggers: declared and checked through the API and `all`/`sequence` from API fires (on an
embedded hub and a distributed deployment), absence over the real Mosquitto with 100 simulated
devices of which 10 stop, and the silent-sensor example manifest (embedded).
Counts are read after quiescence: no new record for a stated interval, nothing pending, and an
empty derived-event outbox."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import pytest

from tests.integration.test_rule_routing_mqtt import publisher, subscribe_feed
from tests.plugins.hub import HubClient, put_action
from tests.plugins.manifests import EXAMPLES
from tests.plugins.waiting import wait_quiet
from triggerhub.config import DeriveState
from triggerhub.manifests.client import HttpWhiskClient
from triggerhub.manifests.deployer import deploy_manifest, undeploy_manifest
from triggerhub.store.base import ActivationQuery

ECHO = "def main(args):\n    return args\n"
DEVICES = 100
SILENT = 10
FOR_S = 2
QUIET_S = 2 * FOR_S + 1  # longer than a silence: a false or a doubled alert would show


async def settled_records(hub: HubClient, action: str, *, quiet_s: float, timeout_s: float,
                          at_least: int = 0) -> list[Any]:
    """The action's records once there were `at_least` of them, their count held for `quiet_s`,
    nothing was pending and no derived event waited in the outbox (a slow start on a loaded
    machine is then not taken for quiet; more records than expected still show)."""
    store = hub.hub.engine.store
    query = ActivationQuery(namespace="guest", name=action, limit=10_000)

    async def observe() -> tuple[int, int, int]:
        return (await store.count_activations(query), len(await store.list_pending()),
                len(await store.list_derived_outbox(limit=100)))

    await wait_quiet(observe, lambda seen: seen[0] >= at_least and seen[1:] == (0, 0), quiet_s=quiet_s,
                     timeout_s=timeout_s)
    return await store.list_activations(query)


async def put(hub: HubClient, path: str, body: Any) -> Any:
    status, answer = await hub.call("PUT", f"namespaces/_/{path}", body)
    assert status == 200, answer
    return answer


# ---------------------------------------------------------------------------- the declaration


BOTH_MODES = pytest.mark.parametrize("runtime_name", ["process", pytest.param("distributed", marks=[
    pytest.mark.kafka, pytest.mark.postgres])])


@BOTH_MODES
async def test_a_derived_trigger_is_declared_shown_and_checked(hub):
    await put(hub, "triggers/door", {})
    status, body = await hub.call("PUT", "namespaces/_/triggers/entry", {"derive": {
        "kind": "sequence", "from": ["door", "/_/badge"], "key": "$.data.person", "windowS": 5}})
    assert (status, body["error"]) == (400, "derive.from names trigger /guest/badge, which does not exist; create it first")
    await put(hub, "triggers/badge", {})
    shown = await put(hub, "triggers/entry", {"derive": {"kind": "sequence", "from": ["door", "/_/badge"],
                                                         "key": "$.data.person", "windowS": 5}})
    assert shown["derive"] == {"kind": "sequence", "key": "$.data.person", "from": ["/guest/door", "/guest/badge"],
                               "windowS": 5}
    status, got = await hub.call("GET", "namespaces/_/triggers/entry")
    assert (status, got["derive"]) == (200, shown["derive"])

    bad = [
        ({"kind": "later", "from": "door", "key": "$.data.p", "forS": 1},
         "derive.kind 'later' is not a known kind; use one of all, sequence, absence"),
        ({"kind": "absence", "from": "door", "key": "data.p", "forS": 1},
         "derive.key 'data.p' is not a valid path: a path starts with '$', as in $.data.temp"),
        ({"kind": "all", "from": ["door", "badge"], "key": "$.data.p", "windowS": 0},
         "derive.windowS 0 must be a number of seconds above 0 and at most 604800"),
        ({"kind": "absence", "from": "silent", "key": "$.data.p", "forS": 1},
         "derive.from names /guest/silent, the trigger itself; name the triggers it derives from"),
        ({"kind": "absence", "from": "entry", "key": "$.data.p", "forS": 1},
         "derive.from names /guest/entry, itself a derived trigger; derive from the triggers that its sources are"),
    ]
    for derive, message in bad:
        status, body = await hub.call("PUT", "namespaces/_/triggers/silent", {"derive": derive})
        assert (status, body["error"]) == (400, message), derive
    status, body = await hub.call("PUT", "namespaces/_/triggers/silent", {"derive": {
        "kind": "absence", "from": "/other/heartbeat", "key": "$.data.p", "forS": 1}})
    assert (status, body["error"]) == (403, "The supplied authentication is not authorized to access 'other/heartbeat'.")
    status, body = await hub.call("GET", "namespaces/_/triggers/silent")
    assert status == 404, "a refused declaration writes nothing"

    # A source that feeds a derived trigger cannot become derived itself; deleting the derived
    # trigger unlinks its sources.
    status, body = await hub.call("PUT", "namespaces/_/triggers/door", {"derive": {
        "kind": "absence", "from": "badge", "key": "$.data.p", "forS": 1}}, overwrite=True)
    assert (status, body["error"]) == (400, "trigger /guest/door feeds the derived trigger(s) /guest/entry, so it "
                                            "cannot be derived itself; delete those first or derive from its sources")
    assert (await hub.call("DELETE", "namespaces/_/triggers/entry"))[0] == 200
    door = await hub.hub.engine.store.get_entity("guest", "door")
    assert door is not None and door.derived == ()  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- all and sequence


async def fire(hub: HubClient, trigger: str, person: str) -> None:
    status, body = await hub.call("POST", f"namespaces/_/triggers/{trigger}", {"person": person})
    assert status == 202, body


@BOTH_MODES
async def test_all_and_sequence_from_fires_derive_one_event_carrying_both(hub, runtime_name):
    await put_action(hub, "echo", ECHO, "python:default")
    for name in ("door", "badge"):
        await put(hub, f"triggers/{name}", {})
    await put(hub, "triggers/entry", {"derive": {"kind": "sequence", "from": ["door", "badge"],
                                                 "key": "$.data.person", "windowS": 30}})
    await put(hub, "triggers/both", {"derive": {"kind": "all", "from": ["door", "badge"],
                                                "key": "$.data.person", "windowS": 30}})
    await put(hub, "rules/on-entry", {"trigger": "entry", "action": "echo"})
    await put(hub, "rules/on-both", {"trigger": "both", "action": "echo"})

    # (trigger, person) in firing order: ann in order; bob badge first (all only); cat twice a
    # door and one badge (one pair each); dan only a door (nothing).
    for trigger, person in [("door", "ann"), ("badge", "bob"), ("badge", "ann"), ("door", "bob"),
                            ("door", "cat"), ("door", "cat"), ("badge", "cat"), ("door", "dan")]:
        await fire(hub, trigger, person)
    records = await settled_records(hub, "echo", quiet_s=2, timeout_s=60)
    results = sorted((r.response.result["kind"], r.response.result["key"],
                      tuple(e["trigger"] for e in r.response.result["events"])) for r in records)
    assert results == [("all", "ann", ("/guest/door", "/guest/badge")), ("all", "bob", ("/guest/door", "/guest/badge")),
                       ("all", "cat", ("/guest/door", "/guest/badge")),
                       ("sequence", "ann", ("/guest/door", "/guest/badge")),
                       ("sequence", "cat", ("/guest/door", "/guest/badge"))]
    ann = next(r.response.result for r in records if r.response.result["key"] == "ann"
               and r.response.result["kind"] == "sequence")
    assert ann["windowS"] == 30 and [e["data"] for e in ann["events"]] == [{"person": "ann"}, {"person": "ann"}]
    store = hub.hub.engine.store
    assert await store.count_events("/guest/entry") == 2 and await store.count_events("/guest/both") == 3
    if runtime_name == "distributed" and hub.hub.engine.config.kafka.derive_state is DeriveState.TABLE:
        # The default distributed state is the workers' Faust table: nothing of it is in PostgreSQL
        # (what waits there is checked by tests/integration/test_derived_table.py).
        assert [await store.get_derived_state("/guest/entry", k) for k in ("cat", "dan")] == [None, None]
        return
    # What is still waiting: cat's second door and dan's door, for both derived triggers.
    assert {k: json.loads(s)["pending"][0]["data"] for k in ("cat", "dan")
            for s, _ in [await store.get_derived_state("/guest/entry", k)]} == {"cat": {"person": "cat"},
                                                                                 "dan": {"person": "dan"}}


# ---------------------------------------------------------------------------- absence over MQTT


def heartbeats(broker: tuple[str, int], topic: str, devices: list[str], stop: threading.Event,
               rounds_before_stop: int, silent: set[str]) -> None:
    """Every device beats each 0.4 s (QoS 1); the `silent` ones stop after `rounds_before_stop`."""
    client = publisher(broker)
    try:
        beat = 0
        while not stop.is_set():
            infos = [client.publish(topic, json.dumps({"deviceId": d, "beat": beat}), qos=1)
                     for d in devices if beat < rounds_before_stop or d not in silent]
            for info in infos:
                info.wait_for_publish(timeout=30)
            beat += 1
            stop.wait(0.4)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.mqtt
async def test_absence_of_10_of_100_devices_over_mqtt_derives_exactly_10_events(hub, mqtt_broker):
    prefix = f"t14-{uuid.uuid4().hex[:8]}"
    await put_action(hub, "alert", ECHO, "python:default")
    await put(hub, "triggers/heartbeat", {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]})
    await put(hub, "triggers/silent", {"derive": {"kind": "absence", "from": "/_/heartbeat",
                                                  "key": "$.data.deviceId", "forS": FOR_S}})
    await put(hub, "rules/alert-silent", {"trigger": "silent", "action": "alert"})
    await subscribe_feed(hub, "heartbeat", mqtt_broker, f"{prefix}/heartbeat", f"c-{prefix}")

    devices = [f"dev-{i:03d}" for i in range(DEVICES)]
    silent = set(devices[::DEVICES // SILENT])
    stop = threading.Event()
    beating = asyncio.create_task(asyncio.to_thread(heartbeats, mqtt_broker, f"{prefix}/heartbeat", devices, stop, 3,
                                                    silent))
    try:
        records = await settled_records(hub, "alert", quiet_s=QUIET_S, timeout_s=90, at_least=SILENT)
        assert not beating.done(), "the 90 devices kept beating all along"
    finally:
        stop.set()
        await beating
    assert sorted(r.response.result["key"] for r in records) == sorted(silent)
    first = records[0].response.result
    assert set(first) == {"kind", "key", "forS", "silentSinceMs", "deadlineMs", "events"}
    assert (first["kind"], first["forS"]) == ("absence", FOR_S)
    # The deadline counts from when the hub heard the last beat: its event time, or a little later.
    assert 2_000 <= first["deadlineMs"] - first["silentSinceMs"] < 3_000
    assert first["events"][0]["data"] == {"deviceId": first["key"], "beat": 2}
    store = hub.hub.engine.store
    assert await store.count_events("/guest/silent") == SILENT


# ---------------------------------------------------------------------------- the example manifest


@pytest.mark.mqtt
async def test_the_silent_sensor_example_raises_one_alert(hub, mqtt_broker):
    host, port = mqtt_broker
    manifest = EXAMPLES / "iot-sensor-silence" / "manifest.yaml"
    async with HttpWhiskClient(hub.apihost, hub.auth) as client:
        await deploy_manifest(client, manifest, params={"url": f"mqtt://{host}:{port}"})
        status, silent = await hub.call("GET", "namespaces/_/triggers/sensor-silent")
        assert (status, silent["derive"]) == (200, {"kind": "absence", "from": "/guest/sensor-heartbeat",
                                                    "key": "$.subject", "forS": 120})
        again = await deploy_manifest(client, manifest, params={"url": f"mqtt://{host}:{port}"}, dry_run=True)
        assert again.plan.steps == (), "the hub shows the derive the manifest declares"

        # The example's 2 minutes, shortened to 1 s through the API for the test.
        status, body = await hub.call("PUT", "namespaces/_/triggers/sensor-silent",
                                      {"derive": {**silent["derive"], "forS": 1}}, overwrite=True)
        assert status == 200, body
        sensor = f"s-{uuid.uuid4().hex[:6]}"
        client_mqtt = publisher(mqtt_broker)
        try:
            info = client_mqtt.publish(f"sensors/{sensor}/heartbeat", json.dumps({"ok": True}), qos=1)
            await asyncio.to_thread(info.wait_for_publish, 10)
        finally:
            client_mqtt.disconnect()
            client_mqtt.loop_stop()
        (record,) = await settled_records(hub, "iot-silence/raise-alert", quiet_s=2.5, timeout_s=60)
        result = record.response.result
        assert {k: result[k] for k in ("alert", "sensor", "silentForS")} == {"alert": "sensor silent",
                                                                           "sensor": sensor, "silentForS": 1}
        await undeploy_manifest(client, manifest)
    status, _ = await hub.call("GET", "namespaces/_/triggers/sensor-silent")
    assert status == 404
