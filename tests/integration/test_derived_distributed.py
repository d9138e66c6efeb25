"""Derived triggers in distributed mode (controller, worker and two invokers as processes, Kafka
and PostgreSQL): the worker is killed with -9 while devices are silent and while `sequence`
pairs are half seen; after quiescence there is exactly one alert per silent device and one
derived event per completed pair. Run with the keyed state in PostgreSQL (the default) and in
the workers' Faust table (TRIGGERHUB_DERIVE_STATE=table)."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.integration.test_distributed_faults import (  # noqa: F401  (fixtures)
    ApiClient, cluster, count_records, put_action, store,
)
from tests.plugins.distributed import Deployment
from tests.plugins.waiting import wait_quiet, wait_until
from triggerhub.store.sql import SqlStore

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
ECHO = "def main(args):\n    return args\n"
DEVICES = 20
SILENT = 4
FOR_S = 6
BEAT_S = 2.0  # 10 fires a second: a loaded 2-core machine's worker keeps up


@pytest.fixture(params=["table", "store"])
def derive_state(request: pytest.FixtureRequest, deployment: Deployment) -> str:
    """Where the processes keep derived triggers' state; requested before `cluster` starts them."""
    deployment.env["TRIGGERHUB_DERIVE_STATE"] = request.param
    return str(request.param)


async def put(client: ApiClient, path: str, body: object) -> None:
    status, answer = await client.call("PUT", f"namespaces/_/{path}", body)
    assert status == 200, answer


async def beat(client: ApiClient, devices: list[str], silent: set[str], rounds_before_stop: int,
               stop: asyncio.Event, rounds: list[int]) -> None:
    """Each device fires the heartbeat each BEAT_S; the silent ones stop after a few rounds."""
    while not stop.is_set():
        live = [d for d in devices if rounds[0] < rounds_before_stop or d not in silent]
        answers = await asyncio.gather(*(client.call("POST", "namespaces/_/triggers/heartbeat", {"deviceId": d})
                                         for d in live))
        assert [status for status, _ in answers] == [202] * len(live), answers
        rounds[0] += 1
        try:
            async with asyncio.timeout(BEAT_S):
                await stop.wait()
        except TimeoutError:
            pass


async def test_worker_kill9_changes_no_absence_and_no_sequence(derive_state, cluster, deployment, store: SqlStore) -> None:
    client, processes = cluster
    await put_action(client, "alert", ECHO)
    for name in ("heartbeat", "door", "badge"):
        await put(client, f"triggers/{name}", {})
    await put(client, "triggers/silent", {"derive": {"kind": "absence", "from": "heartbeat",
                                                     "key": "$.data.deviceId", "forS": FOR_S}})
    await put(client, "triggers/entry", {"derive": {"kind": "sequence", "from": ["door", "badge"],
                                                    "key": "$.data.deviceId", "windowS": 60}})
    await put(client, "rules/alert-silent", {"trigger": "silent", "action": "alert"})
    await put(client, "rules/alert-entry", {"trigger": "entry", "action": "alert"})

    devices = [f"dev-{i:02d}" for i in range(DEVICES)]
    silent = set(devices[::DEVICES // SILENT])
    stop, rounds = asyncio.Event(), [0]
    beating = asyncio.create_task(beat(client, devices, silent, 3, stop, rounds))
    try:
        await wait_until(lambda: rounds[0] >= 3, timeout_s=60)
        for device in devices[:10]:  # doors now, badges after the kill: pairs across the crash
            assert (await client.call("POST", "namespaces/_/triggers/door", {"deviceId": device}))[0] == 202
        processes["worker"].kill(signal.SIGKILL)
        for device in devices[:10]:
            assert (await client.call("POST", "namespaces/_/triggers/badge", {"deviceId": device}))[0] == 202
        processes["worker"] = await asyncio.to_thread(deployment.start, "worker")

        async def observe() -> tuple[int, int, int]:
            return (await count_records(client, "alert"), len(await store.list_pending()),
                    len(await store.list_derived_outbox(limit=100)))

        seen = await wait_quiet(observe, lambda s: s[1:] == (0, 0) and s[0] >= SILENT + 10,
                                quiet_s=2 * FOR_S + 1, timeout_s=150)
        assert not beating.done(), "the live devices kept beating all along"
    finally:
        stop.set()
        await beating
    status, records = await client.call("GET", "namespaces/_/activations", name="alert", docs=True, limit=200)
    assert status == 200, records
    derived = sorted((r["response"]["result"]["kind"], r["response"]["result"]["key"]) for r in records)
    assert derived == sorted([("absence", d) for d in silent] + [("sequence", d) for d in devices[:10]])
    assert seen == (SILENT + 10, 0, 0)
    assert await store.count_events("/guest/silent") == SILENT
    assert await store.count_events("/guest/entry") == 10
