"""Issue 14 in distributed mode: controller, worker and two invokers as processes on Kafka and
PostgreSQL. The retry, dead-letter and redrive scenarios of tests/plugins/retries.py, once as is
and once with the worker (which starts due retries) and an invoker killed (-9) mid-way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.plugins.distributed import (
    ApiClient, Deployment, HubProcess, api_client, invoker_restarter, wait_for_invokers,
)
from tests.plugins.retries import RELAXED_LIMITS, Kill, dead_letters_then_redrive, flaky_events
from triggerhub.store.sql import SqlStore

# Above the scenarios' own waits (240 s each), so a stuck one fails with what it last saw.
pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

EVENTS = 1000


@pytest.fixture
async def cluster(deployment: Deployment) -> AsyncIterator[tuple[ApiClient, dict[str, HubProcess], SqlStore]]:
    deployment.env.update(RELAXED_LIMITS)
    processes = {"controller": deployment.start("controller"), "worker": deployment.start("worker")}
    for invoker_id in (0, 1):
        processes[f"invoker{invoker_id}"] = deployment.start("invoker", "--id", str(invoker_id))
    store = SqlStore(deployment.env["TRIGGERHUB_STORE_URL"])
    await store.open()
    try:
        async with api_client(deployment, processes["controller"]) as client:
            await wait_for_invokers(client, 2, restart=invoker_restarter(deployment, processes))
            yield client, processes, store
    finally:
        await store.close()


def _rows(store: SqlStore):  # type: ignore[no-untyped-def]
    async def rows() -> tuple[int, int]:
        return len(await store.list_pending()), await store.count_retries()
    return rows


def _kill(deployment: Deployment, client: ApiClient, processes: dict[str, HubProcess], store: SqlStore) -> Kill:
    async def kill() -> None:
        processes["worker"].kill()
        processes["invoker0"].kill()
        pending, retries = await _rows(store)()
        assert pending + retries > 0, "the kill must interrupt waiting retries or runs in flight"
        processes["worker"] = await asyncio.to_thread(deployment.start, "worker")
        processes["invoker0"] = await asyncio.to_thread(deployment.start, "invoker", "--id", "0")
        await wait_for_invokers(client, 2, restart=invoker_restarter(deployment, processes))
    return kill


@pytest.mark.parametrize("killed", [False, True], ids=["as-is", "kill-9"])
async def test_events_failing_twice_end_in_three_records_each(cluster, deployment: Deployment, killed: bool):
    client, processes, store = cluster
    await flaky_events(client, _rows(store), events=EVENTS,
                       kill=_kill(deployment, client, processes, store) if killed else None)


@pytest.mark.parametrize("killed", [False, True], ids=["as-is", "kill-9"])
async def test_always_failing_events_are_dead_letters_until_redriven(cluster, deployment: Deployment, killed: bool):
    client, processes, store = cluster
    await dead_letters_then_redrive(client, _rows(store), events=EVENTS,
                                    kill=_kill(deployment, client, processes, store) if killed else None)
