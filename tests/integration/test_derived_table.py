"""Derived triggers' state in the workers' Faust table (TRIGGERHUB_DERIVE_STATE=table): the
keyed state is in the table's changelog topic and not in PostgreSQL, and a worker killed with -9
just after it derived the first events recovers the table from the changelog and derives each of
the others once, with none doubled. With two workers, the one left running takes over the killed
one's partitions, their uncommitted messages included (bus/app.py's seek after a rebalance)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.integration.test_distributed_faults import (  # noqa: F401  (fixtures)
    ApiClient, cluster, count_records, put_action, store,
)
from tests.plugins.distributed import Deployment, HubProcess
from tests.plugins.waiting import wait_quiet
from triggerhub.store.sql import SqlStore

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
ECHO = "def main(args):\n    return args\n"
DEVICES = 12
FOR_S = 4
PAIRS = 6
SPREAD_S = 0.4


@pytest.fixture
def in_table(deployment: Deployment) -> None:
    """Every process of the deployment keeps derived state in the table; requested before `cluster`."""
    deployment.env["TRIGGERHUB_DERIVE_STATE"] = "table"


async def put(client: ApiClient, path: str, body: object) -> None:
    status, answer = await client.call("PUT", f"namespaces/_/{path}", body)
    assert status == 200, answer


async def fire(client: ApiClient, trigger: str, device: str) -> None:
    status, answer = await client.call("POST", f"namespaces/_/triggers/{trigger}", {"deviceId": device})
    assert status == 202, answer


async def declare(client: ApiClient) -> None:
    """`silent`: absence of a heartbeat for FOR_S; `both`: a door and a badge of one device within 60 s."""
    await put_action(client, "alert", ECHO)
    for name in ("heartbeat", "door", "badge"):
        await put(client, f"triggers/{name}", {})
    await put(client, "triggers/silent", {"derive": {"kind": "absence", "from": "heartbeat",
                                                     "key": "$.data.deviceId", "forS": FOR_S}})
    await put(client, "triggers/both", {"derive": {"kind": "all", "from": ["door", "badge"],
                                                   "key": "$.data.deviceId", "windowS": 60}})
    await put(client, "rules/alert-silent", {"trigger": "silent", "action": "alert"})
    await put(client, "rules/alert-both", {"trigger": "both", "action": "alert"})


async def changelog(deployment: Deployment, partitions_of: dict[tuple[str, str], int] | None = None,
                    ) -> dict[tuple[str, str], Any]:
    """The table as its changelog topic holds it: the last value per (derived trigger, key); each
    key's partition goes into `partitions_of`."""
    topic = f"{deployment.env['TRIGGERHUB_KAFKA_TOPIC_PREFIX']}worker-derive-state-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.env["TRIGGERHUB_KAFKA_BOOTSTRAP"], enable_auto_commit=False)
    await consumer.start()
    try:
        assert topic in await consumer.topics(), f"no changelog topic {topic}"  # also loads its metadata
        partitions = [TopicPartition(topic, p) for p in range(deployment.config().kafka.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        table: dict[tuple[str, str], Any] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    trigger, key = json.loads(record.key)
                    table[(trigger, key)] = None if record.value is None else json.loads(record.value)
                    if partitions_of is not None:
                        partitions_of[(trigger, key)] = record.partition
        return table
    finally:
        await consumer.stop()


def assigned(worker: HubProcess) -> list[int]:
    """The table partitions a worker was given last, from its log line (bus/keyed.py)."""
    found = re.findall(r"table derive-state: partitions (\[[0-9, ]*\]) of", worker.log_path.read_text(errors="replace"))
    return json.loads(found[-1]) if found else []


async def alerts(client: ApiClient) -> list[tuple[str, str]]:
    status, records = await client.call("GET", "namespaces/_/activations", name="alert", docs=True, limit=200)
    assert status == 200, records
    return sorted((r["response"]["result"]["kind"], r["response"]["result"]["key"]) for r in records)


async def settle(client: ApiClient, store: SqlStore, expected: int) -> int:
    """The alert count once nothing is pending and it has not moved for two deadlines."""
    async def observe() -> tuple[int, int]:
        return await count_records(client, "alert"), len(await store.list_pending())

    seen = await wait_quiet(observe, lambda s: s[1] == 0 and s[0] >= expected, quiet_s=2 * FOR_S + 1, timeout_s=150)
    return seen[0]


async def test_state_is_in_the_changelog_topic_and_not_in_postgres(in_table, cluster, deployment,
                                                                   store: SqlStore) -> None:
    client, _ = cluster
    await declare(client)
    devices = [f"dev-{i:02d}" for i in range(4)]
    for device in devices:
        await fire(client, "heartbeat", device)
        await fire(client, "door", device)
    await fire(client, "badge", devices[0])

    assert await settle(client, store, len(devices) + 1) == len(devices) + 1
    assert await alerts(client) == sorted([("absence", d) for d in devices] + [("all", devices[0])])
    table = await changelog(deployment)
    for device in devices:  # disarmed after its alert; still knows the event that armed it
        value = table[("/guest/silent", device)]
        assert value["state"]["armed"] is False and value["state"]["last"]["data"] == {"deviceId": device}
        assert value["dueMs"] is None and len(value["applied"]) == 1
        assert await store.get_derived_state("/guest/silent", device) is None
        assert await store.get_derived_state("/guest/both", device) is None
    pending = table[("/guest/both", devices[1])]["state"]["pending"]  # a door still waiting for its badge
    assert [(p["source"], p["data"]) for p in pending] == [(0, {"deviceId": devices[1]})]
    paired = table[("/guest/both", devices[0])]  # paired: no state, only the ids it applied
    assert paired["state"] is None and len(paired["applied"]) == 2
    assert await store.list_derived_outbox(limit=10) == []
    assert await store.count_events("/guest/silent") == len(devices)
    assert await store.count_events("/guest/both") == 1


async def test_worker_kill9_after_the_first_alert_recovers_the_table_and_doubles_nothing(
        in_table, cluster, deployment, store: SqlStore) -> None:
    client, processes = cluster
    await declare(client)
    devices = [f"dev-{i:02d}" for i in range(DEVICES)]
    for device in devices[:PAIRS]:
        await fire(client, "door", device)
    for device in devices:  # the deadlines come SPREAD_S apart
        await fire(client, "heartbeat", device)
        await asyncio.sleep(SPREAD_S)
    async with asyncio.timeout(60):  # kill as the first derived events are accepted, before the others
        while await store.count_events("/guest/silent") == 0:
            await asyncio.sleep(0.02)
    processes["worker"].kill(signal.SIGKILL)
    derived_before_kill = await store.count_events("/guest/silent")
    for device in devices[:PAIRS]:  # the other half of each pair arrives while no worker runs
        await fire(client, "badge", device)
    processes["worker"] = await asyncio.to_thread(deployment.start, "worker")

    expected = sorted([("absence", d) for d in devices] + [("all", d) for d in devices[:PAIRS]])
    assert await settle(client, store, len(expected)) == len(expected), processes["worker"].log_tail()
    assert await alerts(client) == expected
    assert await store.count_events("/guest/silent") == DEVICES
    assert await store.count_events("/guest/both") == PAIRS
    assert 0 < derived_before_kill < DEVICES, "the kill came while some deadlines were still ahead"
    table = await changelog(deployment)
    assert sorted(d for (t, d), v in table.items() if t == "/guest/silent" and v["state"]["armed"] is False) == devices


async def test_a_second_worker_takes_over_the_table_of_a_killed_one(in_table, cluster, deployment,
                                                                    store: SqlStore) -> None:
    """Two workers share the table's partitions; one is killed with -9 while every key is armed:
    the other is given its partitions, reads them back from the changelog and fires each
    deadline once."""
    client, processes = cluster
    processes["worker2"] = await asyncio.to_thread(deployment.start, "worker")  # ready once it holds partitions
    partitions_n = deployment.config().kafka.partitions
    async with asyncio.timeout(60):  # the rebalance gave each worker part of the table
        while not (0 < len(assigned(processes["worker"])) < partitions_n and assigned(processes["worker2"])):
            await asyncio.sleep(0.1)
    killed = assigned(processes["worker"])
    await declare(client)
    devices = [f"dev-{i:02d}" for i in range(DEVICES)]
    for device in devices:
        await fire(client, "heartbeat", device)
        await fire(client, "door", device)
    async with asyncio.timeout(60):  # every event accepted: its message is on derive-keys, confirmed
        while await store.count_events("/guest/door") < DEVICES:
            await asyncio.sleep(0.05)
    processes["worker"].kill(signal.SIGKILL)
    for device in devices:
        await fire(client, "badge", device)

    expected = sorted([("absence", d) for d in devices] + [("all", d) for d in devices])
    assert await settle(client, store, len(expected)) == len(expected), processes["worker2"].log_tail()
    assert await alerts(client) == expected
    assert await store.count_events("/guest/silent") == DEVICES
    assert await store.count_events("/guest/both") == DEVICES
    assert assigned(processes["worker2"]) == list(range(partitions_n))
    partitions: dict[tuple[str, str], int] = {}
    table = await changelog(deployment, partitions)
    assert sorted(d for (t, d), v in table.items() if t == "/guest/silent" and v["state"]["armed"] is False) == devices
    taken_over = sorted(d for (t, d), p in partitions.items() if t == "/guest/silent" and p in killed)
    assert taken_over, f"some keys lived in the killed worker's partitions {killed}"
