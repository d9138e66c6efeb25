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
