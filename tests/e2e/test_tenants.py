"""`triggerhub admin` against a running hub: a blocked, deleted or re-keyed subject stops
authenticating, and new limits apply, within the hub's auth cache time (TRIGGERHUB_AUTH_CACHE_S),
and in an embedded hub from the next request (the entity generation tells it)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.plugins.hub import HubClient, hub_config
from triggerhub.cli.compose import running_hub
from triggerhub.errors import AUTH_INVALID
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.invoker.sandbox import Sandbox
from triggerhub.model import FullyQualifiedName, TriggerEvent, new_activation_id, now_ms

AUTH_CACHE_S = 0.5
NOTICE_WITHIN_S = AUTH_CACHE_S + 5.0  # the cache time plus room for a loaded machine
ECHO = "def main(args):\n    return args\n"


@pytest.fixture
async def tenant_hub(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[HubClient]:
    config = hub_config(tmp_path / "home", TRIGGERHUB_AUTH_CACHE_S=str(AUTH_CACHE_S))
    async with running_hub(config, runtime=ProcessRuntimeFactory(sandbox=sandbox), runtime_name="process") as running:
        async with aiohttp.ClientSession() as session:
            yield HubClient(running, session)


async def admin(hub: HubClient, *args: str) -> str:
    """Run `triggerhub admin ARGS` as a separate process on the running hub's home; its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "triggerhub.cli", "admin", *args,
        env={**os.environ, "TRIGGERHUB_HOME": str(hub.hub.config.home)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def until_status(hub: HubClient, auth: str, expected: int) -> float:
    """Poll as `auth` until the hub answers `expected`; seconds it took. Fails after NOTICE_WITHIN_S."""
    start = time.monotonic()
    async with asyncio.timeout(NOTICE_WITHIN_S):
        while True:
            status, body = await hub.call("GET", "namespaces/_/triggers", auth=auth)
            if status == expected:
                if expected == 401:
                    assert body["error"] == AUTH_INVALID
                return time.monotonic() - start
            await asyncio.sleep(0.05)


async def test_block_rotate_delete_reach_a_running_hub(tenant_hub):
    alice = await admin(tenant_hub, "user", "create", "alice", "-ns", "team-a")
    status, _ = await tenant_hub.call("GET", "namespaces/_/triggers", auth=alice)
    assert status == 200  # now cached by the hub

    await admin(tenant_hub, "user", "block", "alice")
    await until_status(tenant_hub, alice, 401)
    await admin(tenant_hub, "user", "unblock", "alice")
    await until_status(tenant_hub, alice, 200)

    rotated = await admin(tenant_hub, "user", "rotate", "alice", "-ns", "team-a")
    assert rotated.split(":")[0] == alice.split(":")[0] and rotated != alice
    await until_status(tenant_hub, alice, 401)
    status, namespaces = await tenant_hub.call("GET", "namespaces", auth=rotated)
    assert (status, namespaces) == (200, ["team-a"])

    await admin(tenant_hub, "user", "delete", "alice")
    await until_status(tenant_hub, rotated, 401)
    status, _ = await tenant_hub.call("GET", "namespaces/_/triggers")  # guest is untouched
    assert status == 200


async def test_the_embedded_hub_refuses_a_changed_key_on_the_next_request_whatever_its_cache_time(
        tmp_path: Path, sandbox: Sandbox) -> None:
    # an hour of cache time: only the entity generation, raised by every subject write, can tell
    config = hub_config(tmp_path / "home", TRIGGERHUB_AUTH_CACHE_S="3600")
    async with running_hub(config, runtime=ProcessRuntimeFactory(sandbox=sandbox), runtime_name="process") as running:
        async with aiohttp.ClientSession() as session:
            hub = HubClient(running, session)
            alice = await admin(hub, "user", "create", "alice", "-ns", "team-a")
            assert (await hub.call("GET", "namespaces/_/triggers", auth=alice))[0] == 200  # cached now

            await admin(hub, "user", "block", "alice")
            await refused_at_once(hub, alice)
            await admin(hub, "user", "unblock", "alice")
            assert (await hub.call("GET", "namespaces/_/triggers", auth=alice))[0] == 200

            rotated = await admin(hub, "user", "rotate", "alice", "-ns", "team-a")
            await refused_at_once(hub, alice)
            assert (await hub.call("GET", "namespaces/_/triggers", auth=rotated))[0] == 200

            await admin(hub, "user", "delete", "alice")
            await refused_at_once(hub, rotated)
            assert (await hub.call("GET", "namespaces/_/triggers"))[0] == 200  # guest is untouched


async def refused_at_once(hub: HubClient, auth: str) -> None:
    """The first request after the change is refused: no polling, no cache time."""
    status, body = await hub.call("GET", "namespaces/_/triggers", auth=auth)
    assert (status, body["error"]) == (401, AUTH_INVALID)


async def limits_seen(hub: HubClient, auth: str, key: str, value: int) -> None:
    async with asyncio.timeout(NOTICE_WITHIN_S):
        while True:
            status, limits = await hub.call("GET", "namespaces/_/limits", auth=auth)
            assert status == 200, limits
            if limits[key] == value:
                return
            await asyncio.sleep(0.05)


async def test_limits_reach_a_running_hub(tenant_hub):
    bob = await admin(tenant_hub, "user", "create", "bob")
    for path, body in (("actions/echo", {"exec": {"kind": "python:default", "code": ECHO}}), ("triggers/t", {}),
                       ("rules/r", {"trigger": "t", "action": "echo"})):
        status, response = await tenant_hub.call("PUT", f"namespaces/_/{path}", body, auth=bob)
        assert status == 200, response

    limits = json.loads(await admin(tenant_hub, "limits", "set", "bob", "--invocationsPerMinute", "0",
                                    "--firesPerMinute", "0"))
    assert limits == {"invocationsPerMinute": 0, "firesPerMinute": 0}
    await limits_seen(tenant_hub, bob, "invocationsPerMinute", 0)
    status, body = await tenant_hub.call("POST", "namespaces/_/actions/echo", {}, blocking=True, auth=bob)
    assert (status, body["error"]) == (429, "Too many requests in the last minute (count: 0, allowed: 0).")
    status, body = await tenant_hub.call("POST", "namespaces/_/triggers/t", {}, auth=bob)
    assert (status, body["error"]) == (429, "Too many requests in the last minute (count: 0, allowed: 0).")
    status, _ = await tenant_hub.call("POST", "namespaces/_/actions/echo", {}, blocking=True)  # guest: other limits
    assert status == 404  # guest has no echo; not throttled

    await admin(tenant_hub, "limits", "delete", "bob")
    await limits_seen(tenant_hub, bob, "invocationsPerMinute", tenant_hub.hub.config.limits.invocations_per_minute)
    status, record = await tenant_hub.call("POST", "namespaces/_/actions/echo", {"x": 1}, blocking=True, auth=bob)
    assert (status, record["response"]["result"]) == (200, {"x": 1})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_credentials_file_is_private_and_follows_rotation(tenant_hub):
    path = tenant_hub.hub.config.home / "credentials.json"
    assert mode_of(path) == 0o600
    old_guest = tenant_hub.auth
    path.chmod(0o644)  # widened by hand: the next write narrows it again
    new_guest = await admin(tenant_hub, "user", "rotate", "guest")
    assert mode_of(path) == 0o600
    credentials = json.loads(path.read_text())
    assert credentials["guest"] == new_guest and new_guest.split(":")[0] == old_guest.split(":")[0]
    await until_status(tenant_hub, old_guest, 401)
    await until_status(tenant_hub, new_guest, 200)


async def feed_outcome(hub: HubClient, auth: str) -> dict[str, Any]:
    """Hand one event to the engine as a feed does (no caller key); the rule outcome it recorded."""
    event = TriggerEvent(new_activation_id(), "/test/feed", "test.event", FullyQualifiedName("carol", "t"), {"n": 1},
                         time_ms=now_ms())
    assert await hub.hub.engine.emit(event)
    async with asyncio.timeout(NOTICE_WITHIN_S):
        while True:
            status, record = await hub.call("GET", f"namespaces/_/activations/{event.id}", auth=auth)
            if status == 200:
                [line] = record["logs"]
                return dict(json.loads(line))
            await asyncio.sleep(0.05)


async def until_outcome(hub: HubClient, auth: str, error: str) -> None:
    async with asyncio.timeout(NOTICE_WITHIN_S):
        while (await feed_outcome(hub, auth)).get("error") != error:
            await asyncio.sleep(0.05)


async def test_namespace_limits_and_blocking_reach_feed_fired_rules(tenant_hub):
    carol = await admin(tenant_hub, "user", "create", "carol")
    for path, body in (("actions/echo", {"exec": {"kind": "python:default", "code": ECHO}}), ("triggers/t", {}),
                       ("rules/r", {"trigger": "t", "action": "echo"})):
        status, response = await tenant_hub.call("PUT", f"namespaces/_/{path}", body, auth=carol)
        assert status == 200, response
    assert (await feed_outcome(tenant_hub, carol))["success"] is True

    await admin(tenant_hub, "limits", "set", "carol", "--concurrentInvocations", "0")
    await until_outcome(tenant_hub, carol, "Too many concurrent requests in flight (count: 0, allowed: 0).")
    await admin(tenant_hub, "limits", "delete", "carol")
    await admin(tenant_hub, "user", "block", "carol")
    await until_status(tenant_hub, carol, 401)
    # Blocked: the feed's events are still stored (nothing lost), but no rule runs.
    async with asyncio.timeout(NOTICE_WITHIN_S):
        while True:
            event = TriggerEvent(new_activation_id(), "/test/feed", "test.event", FullyQualifiedName("carol", "t"),
                                 {"n": 2}, time_ms=now_ms())
            assert await tenant_hub.hub.engine.emit(event)
            record = await wait_stored(tenant_hub, event.id)
            if json.loads(record.logs[0]).get("error") == "namespace carol is blocked":
                break
            await asyncio.sleep(0.05)


async def wait_stored(hub: HubClient, activation_id: str) -> Any:
    async with asyncio.timeout(NOTICE_WITHIN_S):
        while (record := await hub.hub.engine.store.get_activation("carol", activation_id)) is None:
            await asyncio.sleep(0.05)
    return record
