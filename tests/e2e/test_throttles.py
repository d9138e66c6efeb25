"""Per-namespace throttles answer 429 with OpenWhisk's messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.plugins.hub import HubClient, hub_config
from triggerhub.cli.compose import running_hub
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.invoker.sandbox import Sandbox

SLOW = "import time\ndef main(args):\n    time.sleep(2)\n    return {}\n"


@pytest.fixture
async def tight_hub(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[HubClient]:
    config = hub_config(tmp_path / "home", TRIGGERHUB_CONCURRENT_INVOCATIONS="1")
    async with running_hub(config, runtime=ProcessRuntimeFactory(sandbox=sandbox), runtime_name="process") as running:
        async with aiohttp.ClientSession() as session:
            yield HubClient(running, session)


async def test_concurrent_invocations_limit(tight_hub):
    await tight_hub.call("PUT", "namespaces/_/actions/slow", {"exec": {"kind": "python:default", "code": SLOW}})
    status, first = await tight_hub.call("POST", "namespaces/_/actions/slow")
    assert status == 202
    status, body = await tight_hub.call("POST", "namespaces/_/actions/slow")
    assert (status, body["error"]) == (429, "Too many concurrent requests in flight (count: 1, allowed: 1).")
    status, limits = await tight_hub.call("GET", "namespaces/_/limits")
    assert limits["concurrentInvocations"] == 1 and limits["invocationsPerMinute"] == 60


async def test_api_fires_keep_openwhisk_limits_feed_events_do_not_and_explain_tells_why(tight_hub):
    import json

    from tests.e2e.test_api_actions import wait_record
    from triggerhub.model import FullyQualifiedName, TriggerEvent, new_activation_id, now_ms

    hub = tight_hub
    for name in ("slow", "gone"):
        status, body = await hub.call("PUT", f"namespaces/_/actions/{name}", {"exec": {"kind": "python:default", "code": SLOW}})
        assert status == 200, body
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/rules/r-slow", {"trigger": "t", "action": "slow"}))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/rules/r-gone", {"trigger": "t", "action": "gone"}))[0] == 200
    assert (await hub.call("DELETE", "namespaces/_/actions/gone"))[0] == 200

    status, first = await hub.call("POST", "namespaces/_/triggers/t", {})
    assert status == 202
    status, second = await hub.call("POST", "namespaces/_/triggers/t", {})  # slow still holds the one slot
    record = await wait_record(hub, second["activationId"])
    assert [json.loads(line)["error"] for line in record["logs"]] == [
        "Too many concurrent requests in flight (count: 1, allowed: 1).", "The requested resource does not exist."]
    status, trace = await hub.call("POST", "namespaces/_/rules/r-slow/explain", {"eventId": second["activationId"]})
    assert status == 200, trace
    assert [(r["rule"], r["outcome"], r["error"]) for r in trace["rules"]] == [
        ("guest/r-slow", "throttled", "Too many concurrent requests in flight (count: 1, allowed: 1)."),
        ("guest/r-gone", "action missing", "The requested resource does not exist.")]

    feed_event = TriggerEvent(new_activation_id(), "/test/feed", "test.reading", FullyQualifiedName("guest", "t"), {},
                              time_ms=now_ms())
    assert await hub.hub.engine.emit(feed_event)  # a feed's event: the direct-call limit does not apply
    record = await wait_record(hub, feed_event.id)
    assert json.loads(record["logs"][0])["success"] is True
