"""Distributed mode through its REST API: 1 controller + 1 worker + 2 invokers on Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import pytest

from tests.plugins.distributed import (
    INVOKER_COUNT, Deployment, api_client, controller_apihost, wait_for_invokers,
)
from tests.plugins.waiting import wait_quiet, wait_record, wait_records
from triggerhub.cli.distributed import require_postgres
from triggerhub.config import load_config
from triggerhub.errors import ConfigError

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ECHO = "def main(args):\n    return {'echo': args.get('n'), 'greeting': args.get('greeting')}\n"
POLL_TIMEOUT_S = 60.0
FIRES = 24  # per trigger: two triggers stay under the controller's 60 fires a minute


def test_sqlite_is_refused_in_distributed_mode(tmp_path) -> None:
    config = load_config(env={"TRIGGERHUB_HOME": str(tmp_path)})
    with pytest.raises(ConfigError) as refused:
        require_postgres(config)
    assert str(refused.value) == (
        "distributed mode needs PostgreSQL: TRIGGERHUB_STORE_URL is unset (SQLite under TRIGGERHUB_HOME); "
        "set it to postgresql+asyncpg://user:password@host:port/database "
        "(SQLite cannot be shared by several processes and machines)")


async def test_blocking_invoke_runs_on_an_invoker(distributed_hub) -> None:
    status, _ = await distributed_hub.call("PUT", "namespaces/_/actions/echo",
                                           {"exec": {"kind": "python:3.11", "code": ECHO}})
    assert status == 200
    status, record = await distributed_hub.call("POST", "namespaces/_/actions/echo", {"n": 7}, blocking=True)
    assert status == 200
    assert record["response"]["result"] == {"echo": 7, "greeting": None}
    stored = await wait_record(distributed_hub, record["activationId"], POLL_TIMEOUT_S, interval_s=0.1)
    assert stored["response"] == record["response"]


async def test_fire_matches_rules_in_the_worker(distributed_hub) -> None:
    await distributed_hub.call("PUT", "namespaces/_/actions/echo", {"exec": {"kind": "python:3.11", "code": ECHO}})
    await distributed_hub.call("PUT", "namespaces/_/triggers/door", {"parameters": [{"key": "greeting", "value": "hi"}]})
    status, _ = await distributed_hub.call("PUT", "namespaces/_/rules/opened", {"trigger": "/_/door", "action": "/_/echo"})
    assert status == 200
    status, body = await distributed_hub.call("POST", "namespaces/_/triggers/door", {"n": 3})
    assert status == 202
    trigger_record = await wait_record(distributed_hub, body["activationId"], POLL_TIMEOUT_S, interval_s=0.1)
    assert trigger_record["response"]["result"] == {"n": 3}
    (log_line,) = trigger_record["logs"]
    action_id = __import__("json").loads(log_line)["activationId"]
    action_record = await wait_record(distributed_hub, action_id, POLL_TIMEOUT_S, interval_s=0.1)
    assert action_record["response"]["result"] == {"echo": 3, "greeting": "hi"}


async def test_invoker_admin_routes(distributed_hub) -> None:
    async with distributed_hub.session.get(f"{distributed_hub.apihost}/invokers") as response:
        assert (response.status, await response.json()) == (200, {"invoker0": "up", "invoker1": "up"})
    async with distributed_hub.session.get(f"{distributed_hub.apihost}/invokers/healthy/count") as response:
        assert (response.status, await response.json()) == (200, {"healthy": f"{INVOKER_COUNT}/{INVOKER_COUNT}"})


async def test_status_on_a_controller_reports_kafka_lag_and_invokers(distributed_hub) -> None:
    status, _ = await distributed_hub.call("PUT", "namespaces/_/actions/echo",
                                           {"exec": {"kind": "python:3.11", "code": ECHO}})
    assert status == 200
    status, _ = await distributed_hub.call("POST", "namespaces/_/actions/echo", {"n": 1}, blocking=True)
    assert status == 200
    prefix = distributed_hub.hub.engine.config.kafka.topic_prefix
    # The invokers commit their offset once the record is stored: the lag drains to 0.
    async with asyncio.timeout(POLL_TIMEOUT_S):
        while True:
            status, body = await distributed_hub.call("GET", "status")
            assert status == 200, body
            if body["components"]["kafka"]["groups"][f"{prefix}invokers"]["lag"] == 0:
                break
            await asyncio.sleep(0.2)
    assert (body["status"], body["mode"]) == ("ok", "distributed")
    assert sorted(body["components"]) == ["feeds", "invokers", "kafka", "store"]
    groups = body["components"]["kafka"]["groups"]
    assert sorted(groups) == [f"{prefix}feeds", f"{prefix}invokers", f"{prefix}worker"]
    assert groups[f"{prefix}invokers"]["topic"] == f"{prefix}invocations"
    assert groups[f"{prefix}invokers"]["partitions"] == distributed_hub.hub.engine.config.kafka.partitions
    invokers = body["components"]["invokers"]
    assert invokers["healthy"] == f"{INVOKER_COUNT}/{INVOKER_COUNT}"
    assert set(invokers["invokers"].values()) == {"up"}
    store_url = distributed_hub.hub.engine.config.store_url
    password = urllib.parse.urlsplit(store_url).password
    assert password and body["components"]["store"]["url"] == store_url.replace(f":{password}@", ":***@")
    status, body = await distributed_hub.call("GET", "status", auth="nobody:wrong")
    assert status == 401


async def trigger_event_offsets(config: Any) -> dict[int, int]:
    """End offset of each partition of the `trigger-events` topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from triggerhub.bus.topics import Topics

    topic = Topics(config.kafka.topic_prefix).trigger_events
    consumer = AIOKafkaConsumer(bootstrap_servers=config.kafka.bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(config.kafka.partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def fire_all(client: Any, trigger: str, payloads: list[dict[str, Any]]) -> None:
    for payload in payloads:
        status, body = await client.call("POST", f"namespaces/_/triggers/{trigger}", payload)
        assert status == 202, body


async def test_one_triggers_fires_spread_over_partitions_unless_an_ordering_key_groups_them(distributed_hub) -> None:
    config = distributed_hub.hub.engine.config
    await distributed_hub.call("PUT", "namespaces/_/actions/echo", {"exec": {"kind": "python:3.11", "code": ECHO}})
    status, body = await distributed_hub.call("PUT", "namespaces/_/triggers/ordered",
                                              {"annotations": [{"key": "ordering-key", "value": "device..id"}]})
    assert (status, body["error"]) == (400, "annotation 'ordering-key' is \"device..id\"; give a dotted path of a "
                                            "field in the fired payload, such as \"device\" or \"reading.sensor\" (at "
                                            "most 16 names), or remove it to let the trigger's events run in any order")
    await distributed_hub.call("PUT", "namespaces/_/triggers/spread", {})
    await distributed_hub.call("PUT", "namespaces/_/triggers/ordered",
                               {"annotations": [{"key": "ordering-key", "value": "device"}]})
    for trigger in ("spread", "ordered"):
        status, _ = await distributed_hub.call("PUT", f"namespaces/_/rules/on-{trigger}",
                                               {"trigger": f"/_/{trigger}", "action": "/_/echo"})
        assert status == 200

    start = await trigger_event_offsets(config)
    await fire_all(distributed_hub, "spread", [{"n": n} for n in range(FIRES)])
    spread = await trigger_event_offsets(config)
    await fire_all(distributed_hub, "ordered", [{"n": n, "device": "d7"} for n in range(FIRES)])
    ordered = await trigger_event_offsets(config)

    # Keyed by event id, 24 events all land in one of 4 partitions with a chance of 4 * (1/4)^24 = 1e-14.
    assert sum(spread.values()) - sum(start.values()) == FIRES
    assert sum(1 for p in start if spread[p] > start[p]) >= 2
    assert sorted(ordered[p] - spread[p] for p in spread) == [0] * (len(spread) - 1) + [FIRES]
    async def echo_count() -> int:
        status, body = await distributed_hub.call("GET", "namespaces/_/activations", name="echo", count=True)
        assert status == 200, body
        return int(body["activations"])

    assert await wait_quiet(echo_count, lambda count: count >= 2 * FIRES, quiet_s=2.0,
                            timeout_s=POLL_TIMEOUT_S) == 2 * FIRES
    records = await wait_records(distributed_hub, "echo", 2 * FIRES, POLL_TIMEOUT_S, limit=200)
    assert sorted(r["response"]["result"]["echo"] for r in records) == sorted(list(range(FIRES)) * 2)
