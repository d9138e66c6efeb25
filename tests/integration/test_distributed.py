"""Distributed mode through its REST API: 1 controller + 1 worker + 2 invokers on Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import pytest

from tests.plugins.distributed import (
    INVOKER_COUNT, Deployment, api_client, controller_apihost, wait_for_invokers,
)
from tests.plugins.waiting import wait_record
from triggerhub.cli.distributed import require_postgres
from triggerhub.config import load_config
from triggerhub.errors import ConfigError

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ECHO = "def main(args):\n    return {'echo': args.get('n'), 'greeting': args.get('greeting')}\n"
POLL_TIMEOUT_S = 60.0


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
