"""The event log's settings in a running hub and in a distributed controller (real PostgreSQL and
Kafka): the background pruner deletes events past TRIGGERHUB_EVENT_RETENTION_S, one controller
of a cluster prunes at a time, and a replay window holding more than TRIGGERHUB_REPLAY_MAX_EVENTS
is refused before anything runs."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from tests.plugins.hub import HubClient, hub_config
from tests.plugins.waiting import wait_quiet, wait_until
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.store.base import Acceptance

HOUR_MS = 3_600_000
SETTINGS = {"TRIGGERHUB_EVENT_RETENTION_S": "3600", "TRIGGERHUB_EVENT_PRUNE_INTERVAL_S": "0.1",
            "TRIGGERHUB_REPLAY_MAX_EVENTS": "2"}
MODES = ["embedded", pytest.param("distributed", marks=[pytest.mark.kafka, pytest.mark.postgres])]


@pytest.fixture(params=MODES)
async def client(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[HubClient]:
    starting: Callable[[], AbstractAsyncContextManager[Any]]
    if request.param == "embedded":
        from triggerhub.cli.compose import running_hub
        from triggerhub.invoker.process import ProcessRuntimeFactory

        runtime = ProcessRuntimeFactory(sandbox=request.getfixturevalue("sandbox"))
        starting = lambda: running_hub(hub_config(tmp_path / "home", **SETTINGS), runtime=runtime)  # noqa: E731
    else:
        from triggerhub.cli.distributed import running_controller

        cluster = request.getfixturevalue("distributed_cluster")
        starting = lambda: running_controller(cluster.deployment.config(**SETTINGS))  # noqa: E731
    async with starting() as running, aiohttp.ClientSession() as session:
        yield HubClient(running, session)


async def store(client: HubClient, trigger: str, time_ms: int) -> str:
    event = TriggerEvent(f"ev-{uuid.uuid4().hex}", "test", "test.event", FullyQualifiedName("guest", trigger), {},
                         time_ms=time_ms)
    assert await client.hub.engine.store.accept(Acceptance(event=event))
    return event.id


async def test_the_pruner_keeps_the_configured_retention(client):
    trigger = f"t{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    for age_ms in (3 * HOUR_MS, HOUR_MS + 60_000):
        await store(client, trigger, now_ms - age_ms)
    young = await store(client, trigger, now_ms - HOUR_MS + 600_000)
    log = client.hub.engine.store

    async def left() -> list[str]:
        return [e.id for e in await log.list_events(f"/guest/{trigger}", since_ms=0, upto_ms=now_ms)]

    assert await wait_quiet(left, lambda ids: len(ids) <= 1, quiet_s=0.5, timeout_s=20) == [young]


async def test_a_replay_window_over_the_limit_is_refused(client):
    suffix = uuid.uuid4().hex[:8]
    trigger, action = f"t{suffix}", f"a{suffix}"
    status, _ = await client.call("PUT", f"namespaces/_/actions/{action}", {"exec": {"kind": "python:default",
                                                                                    "code": "def main(a):\n    return a\n"}})
    assert status == 200
    assert (await client.call("PUT", f"namespaces/_/triggers/{trigger}", {}))[0] == 200
    assert (await client.call("PUT", f"namespaces/_/rules/r{suffix}", {"trigger": trigger, "action": action}))[0] == 200
    now_ms = int(time.time() * 1000)
    for offset_ms in (3000, 2000, 1000):
        await store(client, trigger, now_ms - offset_ms)
    status, body = await client.call("POST", f"namespaces/_/rules/r{suffix}/replay", {"from": now_ms - 5000, "to": now_ms})
    assert (status, body["error"]) == (400, f"replay: the window holds 3 events of trigger /guest/{trigger}, more than "
                                            "TRIGGERHUB_REPLAY_MAX_EVENTS=2; replay a narrower window")
    status, records = await client.call("GET", "namespaces/_/activations", name=action)
    assert (status, records) == (200, [])


@pytest.mark.kafka
@pytest.mark.postgres
async def test_one_controller_of_a_cluster_prunes_and_another_takes_over_when_it_stops(distributed_cluster):
    from triggerhub.cli.distributed import running_controller

    def statistics(controller):
        return controller.pruner.statistics()

    async with contextlib.AsyncExitStack() as first_stack, contextlib.AsyncExitStack() as second_stack:
        first = await first_stack.enter_async_context(running_controller(distributed_cluster.deployment.config(
            **SETTINGS, TRIGGERHUB_CONTROLLER_ID="7")))
        second = await second_stack.enter_async_context(running_controller(distributed_cluster.deployment.config(
            **SETTINGS, TRIGGERHUB_CONTROLLER_ID="8")))
        await wait_until(lambda: min(statistics(first).rounds, statistics(second).rounds) >= 5, timeout_s=20)
        leading = [c for c in (first, second) if statistics(c).leading_rounds > 0]
        assert len(leading) == 1, [statistics(c) for c in (first, second)]
        [leader] = leading
        standby = second if leader is first else first
        assert statistics(standby).leading_rounds == 0
        await (first_stack if leader is first else second_stack).aclose()
        await wait_until(lambda: statistics(standby).leading_rounds > 0, timeout_s=20)
