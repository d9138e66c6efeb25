"""kill -9 of the embedded hub while derived triggers hold state: 100 devices beat over the real
Mosquitto, 10 stop; the hub is killed during their silence and again while the first alerts are
being derived. After quiescence there are exactly 10 alerts, one per silent device."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_durability import _call
from tests.integration.test_derived_triggers import DEVICES, FOR_S, QUIET_S, SILENT, heartbeats
from tests.plugins.waiting import wait_quiet, wait_until

pytestmark = pytest.mark.mqtt
ECHO = "def main(args):\n    return args\n"


def waiting_rows(home: Path) -> tuple[int, int]:
    """(pending invocations, derived events in the outbox), read-only from the hub's SQLite file."""
    with contextlib.closing(sqlite3.connect(f"file:{home / 'triggerhub.db'}?mode=ro", uri=True)) as db:
        return (int(db.execute("SELECT count(*) FROM pending").fetchone()[0]),
                int(db.execute("SELECT count(*) FROM derive_outbox").fetchone()[0]))


def heartbeat_events(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{home / 'triggerhub.db'}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM events WHERE trigger_fqn = '/guest/heartbeat'").fetchone()[0])


async def alerts(session: aiohttp.ClientSession, hub) -> list[str]:
    status, listing = await _call(session, hub, "GET", "namespaces/_/activations", name="alert", docs="true",
                                  limit=200)
    assert status == 200, listing
    return [item["response"]["result"]["key"] for item in listing]


async def test_kill9_during_the_silence_and_while_deriving_gives_exactly_one_alert_per_silent_device(
        hub_process, mqtt_broker):
    prefix = f"t14k-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session:
        for method, path, body, query in [
            ("PUT", "namespaces/_/actions/alert", {"exec": {"kind": "python:default", "code": ECHO}}, {}),
            ("PUT", "namespaces/_/triggers/heartbeat",
             {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]}, {}),
            ("PUT", "namespaces/_/triggers/silent", {"derive": {"kind": "absence", "from": "heartbeat",
                                                                "key": "$.data.deviceId", "forS": FOR_S}}, {}),
            ("PUT", "namespaces/_/rules/alert-silent", {"trigger": "silent", "action": "alert"}, {}),
            ("POST", "namespaces/whisk.system/actions/mqtt/subscribe", {
                "lifecycleEvent": "CREATE", "triggerName": "/_/heartbeat", "authKey": hub_process.auth,
                "url": f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}", "topics": f"{prefix}/heartbeat", "qos": 1,
                "clientId": f"c-{prefix}"}, {"blocking": True}),
        ]:
            status, answer = await _call(session, hub_process, method, path, body, **query)
            assert status == 200, answer

    devices = [f"dev-{i:03d}" for i in range(DEVICES)]
    silent = set(devices[::DEVICES // SILENT])
    stop = threading.Event()
    beating = asyncio.create_task(asyncio.to_thread(heartbeats, mqtt_broker, f"{prefix}/heartbeat", devices, stop, 3,
                                                    silent))
    try:
        # Silent devices stop after 3 beats: kill once the 3 rounds are stored, while their silence runs.
        await wait_until(lambda: heartbeat_events(hub_process.home) >= 3 * DEVICES, timeout_s=60, interval_s=0.05)
        hub_process.kill9()
        hub_process.start()
        async with aiohttp.ClientSession() as session:
            # Kill again as soon as the first alert is recorded: the rest are being derived.
            async with asyncio.timeout(60):
                while not await alerts(session, hub_process):
                    await asyncio.sleep(0.05)
        hub_process.kill9()
        hub_process.start()

        async with aiohttp.ClientSession() as session:
            async def observe() -> tuple[int, int, int]:
                return (len(await alerts(session, hub_process)), *await asyncio.to_thread(waiting_rows, hub_process.home))

            seen = await wait_quiet(observe, lambda s: s[1:] == (0, 0), quiet_s=QUIET_S, timeout_s=90)
            assert not beating.done(), "the 90 devices kept beating all along"
            keys = await alerts(session, hub_process)
    finally:
        stop.set()
        await beating
    assert seen == (SILENT, 0, 0)
    assert sorted(keys) == sorted(silent)
