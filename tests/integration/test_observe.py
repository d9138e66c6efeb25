"""Metrics and lineage on a real hub: /metrics moves by exactly what a burst of fires did, and one
MQTT message (real Mosquitto) is followed through its trigger, rule decisions and a 2-step
sequence with one trace id, embedded and distributed; a webhook continues its sender's trace."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.hub import HubClient, put_action
from tests.plugins.waiting import wait_quiet, wait_records
from triggerhub.engine.tenants import create_user, set_limits
from triggerhub.observe.trace import activation_span_id

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

NOOP = "def main(args):\n    return {'ok': True}\n"
STEP_ONE = ("import os\n"
            "def main(args):\n"
            "    return {'n': args['payload']['n'] + 1, 'seen': os.environ.get('__OW_TRACEPARENT')}\n")
STEP_TWO = ("import os\n"
            "def main(args):\n"
            "    return {'n': args['n'] * 10, 'seen': os.environ.get('__OW_TRACEPARENT')}\n")
SENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SENT_SPAN = "00f067aa0ba902b7"
SENT = f"00-{SENT_TRACE}-{SENT_SPAN}-01"
BURST = 20
QUIET_S = 1.0
# The embedded hub with actions in local processes, and with actions in Docker containers.
EMBEDDED = pytest.mark.parametrize("runtime_name", ["process", pytest.param("docker", marks=pytest.mark.docker)])


async def scrape(session: aiohttp.ClientSession, url: str, **headers: str) -> Samples:
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def quiet_records(hub: Any, names: list[str], expected: int) -> int:
    """The count of records of `names` once it reached `expected` and stayed unchanged for QUIET_S."""
    async def count() -> int:
        total = 0
        for name in names:
            status, body = await hub.call("GET", "namespaces/_/activations", name=name, count=True)
            assert status == 200, body
            total += body["activations"]
        return total

    return await wait_quiet(count, lambda seen: seen >= expected, quiet_s=QUIET_S, timeout_s=60)


# ---------------------------------------------------------------------------- metrics


@EMBEDDED
async def test_a_burst_of_fires_moves_every_counter_and_histogram_by_exactly_its_count(hub: HubClient) -> None:
    await put_action(hub, "noop", NOOP, "python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/burst", {}))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/rules/every", {"trigger": "burst", "action": "noop"}))[0] == 200
    status, body = await hub.call("PUT", "namespaces/_/rules/big", {
        "trigger": "burst", "action": "noop", "filter": {"data": {"n": [{"numeric": [">=", 14]}]}}})
    assert status == 200, body
    url = f"{hub.apihost}/metrics"
    before = await scrape(hub.session, url)

    fired = await asyncio.gather(*(hub.call("POST", "namespaces/_/triggers/burst", {"n": n}) for n in range(BURST)))
    assert [status for status, _ in fired] == [202] * BURST
    matching = BURST - 14  # n = 14 .. 19
    assert await quiet_records(hub, ["noop"], BURST + matching) == BURST + matching
    after = await scrape(hub.session, url)

    trigger = {"feed": "api", "trigger": "/guest/burst"}
    assert moved(before, after, "triggerhub_events_received_total", **trigger) == BURST
    assert moved(before, after, "triggerhub_events_fired_total", **trigger) == BURST
    assert moved(before, after, "triggerhub_rule_decisions_total", rule="guest/every", decision="matched") == BURST
    assert moved(before, after, "triggerhub_rule_decisions_total", rule="guest/big", decision="matched") == matching
    assert moved(before, after, "triggerhub_rule_decisions_total", rule="guest/big", decision="filtered") == 14
    runs = BURST + matching
    assert moved(before, after, "triggerhub_activations_total", outcome="success") == runs
    for histogram in ("triggerhub_activation_duration_seconds", "triggerhub_event_to_activation_start_seconds",
                      "triggerhub_event_to_activation_record_seconds"):
        assert moved(before, after, f"{histogram}_count") == runs, histogram
        assert moved(before, after, f"{histogram}_bucket", le="+Inf") == runs, histogram
        assert moved(before, after, f"{histogram}_sum") >= 0
    claimed = sum(moved(before, after, f"triggerhub_pool_{how}_total") for how in ("warm_hits", "prewarm_hits", "cold_starts"))
    assert claimed == runs
    assert moved(before, after, "triggerhub_store_operation_seconds_count", operation="accept") == BURST
    assert moved(before, after, "triggerhub_store_operation_seconds_count", operation="complete") == runs
    assert value(after, "triggerhub_inflight_activations") == 0
    assert value(after, "triggerhub_pool_runtimes", state="busy") == 0
    assert value(after, "triggerhub_pool_runtimes", state="warm") >= 1


async def test_a_throttled_fire_is_counted_once_as_throttled(hub: HubClient) -> None:
    store = hub.hub.engine.store
    limited = await create_user(store, "carol", "limited")
    await set_limits(store, "limited", {"firesPerMinute": 1})
    status, body = await hub.call("PUT", "namespaces/_/actions/noop", {"exec": {"kind": "python:default", "code": NOOP}},
                                  auth=limited.auth_key)
    assert status == 200, body
    assert (await hub.call("PUT", "namespaces/_/triggers/slow", {}, auth=limited.auth_key))[0] == 200
    status, body = await hub.call("PUT", "namespaces/_/rules/r", {"trigger": "slow", "action": "noop"},
                                  auth=limited.auth_key)
    assert status == 200, body
    url = f"{hub.apihost}/metrics"
    if time.time() % 60 > 58:  # both fires must fall in one calendar minute, the throttle's window
        await asyncio.sleep(60 - time.time() % 60)
    before = await scrape(hub.session, url)
    assert (await hub.call("POST", "namespaces/_/triggers/slow", {}, auth=limited.auth_key))[0] == 202
    status, body = await hub.call("POST", "namespaces/_/triggers/slow", {}, auth=limited.auth_key)
    assert status == 429, body
    after = await scrape(hub.session, url)
    trigger = {"feed": "api", "trigger": "/limited/slow"}
    assert moved(before, after, "triggerhub_throttled_total", limit="fires_per_minute") == 1
    assert moved(before, after, "triggerhub_events_rejected_total", **trigger, reason="throttled") == 1
    assert moved(before, after, "triggerhub_events_received_total", **trigger) == 1
    assert moved(before, after, "triggerhub_events_fired_total", **trigger) == 1


async def test_metrics_can_ask_for_a_bearer_token(tmp_path: Any, sandbox: Any) -> None:
    from tests.plugins.hub import hub_config
    from triggerhub.cli.compose import running_hub
    from triggerhub.invoker.process import ProcessRuntimeFactory

    config = hub_config(tmp_path / "home", TRIGGERHUB_METRICS_TOKEN="s3cret")
    async with running_hub(config, runtime=ProcessRuntimeFactory(sandbox=sandbox)) as running:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{running.apihost}/metrics") as response:
                assert response.status == 401
                assert (await response.json())["error"] == (
                    "/metrics needs `Authorization: Bearer <token>` with the token set in TRIGGERHUB_METRICS_TOKEN")
            async with session.get(f"{running.apihost}/metrics", headers={"Authorization": "Bearer wrong"}) as response:
                assert response.status == 401
            samples = await scrape(session, f"{running.apihost}/metrics", Authorization="Bearer s3cret")
            assert ("triggerhub_kafka_consumer_lag_messages", frozenset()) not in samples
            assert any(name == "process_cpu_seconds_total" for name, _ in samples)


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.parametrize("runtime_name", ["distributed"])
async def test_each_distributed_process_serves_its_own_metrics(hub: Any, distributed_cluster: Any) -> None:
    await put_action(hub, "noop", NOOP, "python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/spread", {}))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/rules/all", {"trigger": "spread", "action": "noop"}))[0] == 200
    ports = distributed_cluster.metrics_ports
    worker = f"http://127.0.0.1:{ports['worker']}/metrics"
    invokers = [f"http://127.0.0.1:{ports[name]}/metrics" for name in ports if name.startswith("invoker")]
    worker_before = await scrape(hub.session, worker)
    invokers_before = [await scrape(hub.session, url) for url in invokers]

    fired = await asyncio.gather(*(hub.call("POST", "namespaces/_/triggers/spread", {"n": n}) for n in range(BURST)))
    assert [status for status, _ in fired] == [202] * BURST
    assert await quiet_records(hub, ["noop"], BURST) == BURST
    worker_after = await scrape(hub.session, worker)
    invokers_after = [await scrape(hub.session, url) for url in invokers]

    trigger = {"feed": "api", "trigger": "/guest/spread"}
    assert moved(worker_before, worker_after, "triggerhub_events_received_total", **trigger) == BURST
    assert moved(worker_before, worker_after, "triggerhub_events_fired_total", **trigger) == BURST
    assert moved(worker_before, worker_after, "triggerhub_rule_decisions_total", rule="guest/all",
                 decision="matched") == BURST
    assert moved(worker_before, worker_after, "triggerhub_activations_total", outcome="success") == 0  # runs none
    runs = [moved(b, a, "triggerhub_activations_total", outcome="success") for b, a in zip(invokers_before, invokers_after)]
    assert sum(runs) == BURST, runs
    latencies = sum(moved(b, a, "triggerhub_event_to_activation_record_seconds_count")
                    for b, a in zip(invokers_before, invokers_after))
    assert latencies == BURST
    topics = distributed_cluster.deployment.env["TRIGGERHUB_KAFKA_TOPIC_PREFIX"]
    lag = {dict(labels)["group"]: v for (name, labels), v in worker_after.items()
           if name == "triggerhub_kafka_consumer_lag_messages"}
    assert set(lag) == {f"{topics}worker"}, lag
    controller = await scrape(hub.session, f"{hub.apihost}/metrics")
    groups = {dict(labels)["group"] for (name, labels) in controller if name == "triggerhub_kafka_consumer_lag_messages"}
    assert groups == {f"{topics}worker", f"{topics}invokers", f"{topics}feeds"}


# ---------------------------------------------------------------------------- lineage


def publish_traced(broker: tuple[str, int], topic: str, body: object, traceparent: str) -> None:
    """One QoS 1 message carrying `traceparent` as an MQTT 5 user property; returns after PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(*broker)
    client.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("traceparent", traceparent)
        client.publish(topic, json.dumps(body), qos=1, properties=props).wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def annotations_of(record: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in record["annotations"]}


@pytest.mark.mqtt
@pytest.mark.parametrize("runtime_name", ["process", pytest.param("docker", marks=pytest.mark.docker), pytest.param(
    "distributed", marks=[pytest.mark.kafka, pytest.mark.postgres])])
async def test_an_mqtt_message_is_followed_through_a_two_step_sequence_under_one_trace(
        hub: Any, mqtt_broker: tuple[str, int], runtime_name: str) -> None:
    topic = f"obs-{uuid.uuid4().hex[:8]}/lab/temperature"
    await put_action(hub, "step-one", STEP_ONE, "python:default")
    await put_action(hub, "step-two", STEP_TWO, "python:default")
    status, body = await hub.call("PUT", "namespaces/_/actions/pipeline", {
        "exec": {"kind": "sequence", "components": ["/_/step-one", "/_/step-two"]}})
    assert status == 200, body
    status, body = await hub.call("PUT", "namespaces/_/triggers/reading",
                                  {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]})
    assert status == 200, body
    assert (await hub.call("PUT", "namespaces/_/rules/to-pipeline", {"trigger": "reading", "action": "pipeline"}))[0] == 200
    status, body = await hub.call("PUT", "namespaces/_/rules/only-hot", {
        "trigger": "reading", "action": "step-one", "filter": {"data": {"payload": {"n": [{"numeric": [">", 100]}]}}}})
    assert status == 200, body
    status, body = await hub.call("POST", "namespaces/whisk.system/actions/mqtt/subscribe", {
        "lifecycleEvent": "CREATE", "triggerName": "/_/reading", "authKey": hub.auth, "qos": 1, "topics": topic,
        "url": f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}", "clientId": f"obs-{uuid.uuid4().hex[:8]}"}, blocking=True)
    assert status == 200, body

    await asyncio.to_thread(publish_traced, mqtt_broker, topic, {"n": 4}, SENT)
    [sequence] = await wait_records(hub, "pipeline", 1, 60)
    assert sequence["response"]["result"]["n"] == 50
    event_id = annotations_of(sequence)["event"]
    status, lineage = await hub.call("GET", f"namespaces/_/events/{event_id}/lineage")
    assert status == 200, lineage

    assert lineage["eventId"] == event_id and lineage["traceId"] == SENT_TRACE
    source = lineage["source"]
    assert (source["kind"], source["topic"], source["qos"], source["traceparent"], source["parentSpanId"]) == (
        "mqtt", topic, 1, SENT, SENT_SPAN)
    assert isinstance(source["messageId"], int) and source["messageId"] > 0
    event = lineage["event"]
    assert event["trigger"] == "/guest/reading" and event["traceparent"] == f"00-{SENT_TRACE}-{event['spanId']}-01"
    rules = {r["rule"]: r for r in lineage["rules"]}
    assert set(rules) == {"guest/to-pipeline", "guest/only-hot"}
    assert rules["guest/only-hot"]["decision"] == "filtered" and "activationId" not in rules["guest/only-hot"]
    taken = rules["guest/to-pipeline"]
    assert (taken["decision"], taken["activationId"], taken["status"]) == (
        "matched", sequence["activationId"], "success")

    records = {a["activationId"]: a for a in lineage["activations"]}
    roles = sorted(a["role"] for a in records.values())
    assert roles == ["component", "component", "rule", "trigger"]
    top = records[sequence["activationId"]]
    assert (top["role"], top["rule"], top["parentSpanId"]) == ("rule", "guest/to-pipeline", taken["spanId"])
    assert len(top["children"]) == 2
    trigger_record = records[event["triggerActivationId"]]
    assert trigger_record["role"] == "trigger" and trigger_record["spanId"] == event["spanId"]
    for position, child_id in enumerate(top["children"]):
        child = records[child_id]
        assert (child["role"], child["cause"], child["status"]) == ("component", top["activationId"], "success")
        assert child["parentSpanId"] == top["spanId"] == activation_span_id(top["activationId"])
        assert child["spanId"] == activation_span_id(child_id)
        status, stored = await hub.call("GET", f"namespaces/_/activations/{child_id}")
        assert status == 200, stored
        assert stored["name"] == ("step-one", "step-two")[position]
        # the action saw its own context in its environment
        assert stored["response"]["result"]["seen"] == child["traceparent"] == annotations_of(stored)["traceparent"]
    for item in records.values():
        assert item["traceparent"].split("-")[1] == SENT_TRACE, item

    # the same chain from any activation of it, and through the CLI
    status, again = await hub.call("GET", f"namespaces/_/events/{top['children'][1]}/lineage")
    assert (status, again["eventId"]) == (200, event_id)
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "triggerhub.cli", "event", "trace", event_id, "--json"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "TRIGGERHUB_APIHOST": hub.apihost, "TRIGGERHUB_AUTH": hub.auth,
             "TRIGGERHUB_PROPS": os.devnull})
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == lineage
    tree = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "triggerhub.cli", "event", "trace", event_id],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "TRIGGERHUB_APIHOST": hub.apihost, "TRIGGERHUB_AUTH": hub.auth,
             "TRIGGERHUB_PROPS": os.devnull, "COLUMNS": "200"})
    assert tree.returncode == 0, tree.stderr
    assert f"trace {SENT_TRACE}  source mqtt: topic {topic}" in tree.stdout
    assert "rule guest/only-hot → /guest/step-one: filtered" in tree.stdout


async def test_a_webhook_continues_its_senders_trace_and_other_namespaces_see_nothing(hub: HubClient) -> None:
    await put_action(hub, "noop", NOOP, "python:default")
    status, body = await hub.call("PUT", "namespaces/_/triggers/hook",
                                  {"annotations": [{"key": "feed", "value": "/whisk.system/webhook/webhook"}]})
    assert status == 200, body
    status, body = await hub.call("POST", "namespaces/whisk.system/actions/webhook/webhook", {
        "lifecycleEvent": "CREATE", "triggerName": "/_/hook", "authKey": hub.auth, "verify": "none",
        "idHeader": "X-Delivery"}, blocking=True)
    assert status == 200, body
    assert (await hub.call("PUT", "namespaces/_/rules/on-hook", {"trigger": "hook", "action": "noop"}))[0] == 200

    async with hub.session.post(f"{hub.apihost}/hooks/guest/hook", json={"a": 1},
                                headers={"traceparent": SENT, "X-Delivery": "delivery-7"}) as response:
        assert response.status == 202, await response.text()
        event_id = (await response.json())["id"]
    [record] = await wait_records(hub, "noop", 1, 30)
    status, lineage = await hub.call("GET", f"namespaces/_/events/{event_id}/lineage")
    assert status == 200, lineage
    assert lineage["traceId"] == SENT_TRACE
    assert (lineage["source"]["kind"], lineage["source"]["deliveryId"], lineage["source"]["parentSpanId"]) == (
        "webhook", "delivery-7", SENT_SPAN)
    assert annotations_of(record)["traceparent"].startswith(f"00-{SENT_TRACE}-")
    assert "/" in event_id  # webhook event ids name their trigger: the CLI sends them encoded
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "triggerhub.cli", "event", "trace", event_id, "--json"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "TRIGGERHUB_APIHOST": hub.apihost, "TRIGGERHUB_AUTH": hub.auth,
             "TRIGGERHUB_PROPS": os.devnull})
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == lineage

    # a structured CloudEvent carries its context as the traceparent attribute
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    cloudevent = {"specversion": "1.0", "id": "ce-1", "source": "test", "type": "t", "traceparent": other}
    async with hub.session.post(f"{hub.apihost}/hooks/guest/hook", data=json.dumps(cloudevent),
                                headers={"Content-Type": "application/cloudevents+json", "X-Delivery": "d-8"}) as response:
        assert response.status == 202, await response.text()
        second = (await response.json())["id"]
    status, lineage = await hub.call("GET", f"namespaces/_/events/{second}/lineage")
    assert (status, lineage["traceId"]) == (200, "0af7651916cd43dd8448eb211c80319c")

    stranger = await create_user(hub.hub.engine.store, "mallory", "elsewhere")
    status, body = await hub.call("GET", f"namespaces/_/events/{event_id}/lineage", auth=stranger.auth_key)
    assert status == 404, body
    assert body["error"].startswith(f"The requested resource does not exist: event '{event_id}'")
    status, body = await hub.call("GET", f"namespaces/guest/events/{event_id}/lineage", auth=stranger.auth_key)
    assert status == 403, body


@EMBEDDED
async def test_a_replayed_run_joins_its_events_lineage_marked_as_a_replay(hub: HubClient) -> None:
    await put_action(hub, "seen", STEP_TWO, "python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/meter", {}))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/rules/log", {"trigger": "meter", "action": "seen"}))[0] == 200
    status, fired = await hub.call("POST", "namespaces/_/triggers/meter", {"n": 2})
    assert status == 202, fired
    [first] = await wait_records(hub, "seen", 1, 30)
    event_id = annotations_of(first)["event"]

    status, answer = await hub.call("POST", "namespaces/_/rules/log/replay", {"ids": [event_id], "force": True})
    assert (status, answer["run"]) == (200, 1), answer
    [replayed_id] = answer["activationIds"]
    records = await quiet_records(hub, ["seen"], 2)
    assert records == 2
    status, stored = await hub.call("GET", f"namespaces/_/activations/{replayed_id}")
    assert status == 200, stored
    marks = annotations_of(stored)
    assert (marks["event"], marks["rule"], marks["replay"]) == (event_id, "guest/log", True)
    assert stored["response"]["result"] == {"n": 20, "seen": marks["traceparent"]}  # the action saw its context

    status, lineage = await hub.call("GET", f"namespaces/_/events/{event_id}/lineage")
    assert status == 200, lineage
    by_id = {a["activationId"]: a for a in lineage["activations"]}
    assert sorted(a["role"] for a in by_id.values()) == ["replay", "rule", "trigger"]
    [decision] = lineage["rules"]
    replay = by_id[replayed_id]
    assert (replay["role"], replay["replay"], replay["rule"], replay["parentSpanId"], replay["traceparent"]) == (
        "replay", True, "guest/log", decision["spanId"], marks["traceparent"])
    assert replay["traceparent"].split("-")[1] == lineage["traceId"] == annotations_of(first)["traceparent"].split("-")[1]
    assert replay["spanId"] == activation_span_id(replayed_id) != by_id[first["activationId"]]["spanId"]
    # from the replayed run's id, the same chain
    status, again = await hub.call("GET", f"namespaces/_/events/{replayed_id}/lineage")
    assert (status, again) == (200, lineage)


@pytest.mark.kafka
@pytest.mark.postgres
async def test_the_distributed_controller_writes_the_props_file_the_cli_reads(deployment: Any) -> None:
    props = deployment.root / "triggerhubprops"
    assert deployment.env["TRIGGERHUB_PROPS"] == str(props)
    controller = deployment.start("controller")
    apihost = controller.ready_line.rsplit(" ", 1)[-1]
    lines = props.read_text().splitlines()
    assert lines[1:] == [f"APIHOST={apihost}", f"AUTH={deployment.credentials['guest']}"]
    assert props.stat().st_mode & 0o777 == 0o600
    listing = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "triggerhub.cli", "trigger", "list", "--json"], capture_output=True,
        text=True, timeout=60, cwd=deployment.root,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGERHUB_")} | {"TRIGGERHUB_PROPS": str(props)})
    assert (listing.returncode, json.loads(listing.stdout)) == (0, []), listing.stderr
