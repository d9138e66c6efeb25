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
