"""kill -9 of the hub: every accepted activation ends with exactly one record after a restart."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import sqlite3
from pathlib import Path

import aiohttp

from tests.plugins.waiting import wait_quiet
from triggerhub.store.tables import pending

SLOW = "import time\ndef main(args):\n    time.sleep(1.0)\n    return {'i': args.get('i')}\n"


async def _call(session, hub, method, path, body=None, **query):
    token = base64.b64encode(hub.auth.encode()).decode()
    params = {k: str(v).lower() for k, v in query.items()}
    async with session.request(method, f"{hub.apihost}/api/v1/{path}", json=body, params=params,
                               headers={"Authorization": f"Basic {token}"}) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


def pending_rows(home: Path) -> int:
    """Accepted invocations without a record, read from the hub's SQLite file (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{home / 'triggerhub.db'}?mode=ro", uri=True)) as db:
        return int(db.execute(f"SELECT count(*) FROM {pending.name}").fetchone()[0])


async def test_kill9_then_restart_runs_every_accepted_activation_once(hub_process):
    async with aiohttp.ClientSession() as session:
        assert (await _call(session, hub_process, "PUT", "namespaces/_/actions/slow",
                            {"exec": {"kind": "python:default", "code": SLOW}}))[0] == 200
        assert (await _call(session, hub_process, "PUT", "namespaces/_/triggers/t", {}))[0] == 200
        assert (await _call(session, hub_process, "PUT", "namespaces/_/rules/r", {"trigger": "t", "action": "slow"}))[0] == 200
        accepted: list[str] = []
        for i in range(8):
            status, body = await _call(session, hub_process, "POST", "namespaces/_/actions/slow", {"i": i})
            assert status == 202
            accepted.append(body["activationId"])
        fired: list[str] = []
        for i in range(4):
            status, body = await _call(session, hub_process, "POST", "namespaces/_/triggers/t", {"i": 100 + i})
            assert status == 202
            fired.append(body["activationId"])

    hub_process.kill9()  # mid-flight: the 1 s actions cannot all have finished
    hub_process.start()

    async with aiohttp.ClientSession() as session:
        trigger_records = []
        for trigger_id in fired:
            status, record = await _call(session, hub_process, "GET", f"namespaces/_/activations/{trigger_id}")
            assert status == 200, "a fired trigger's record is written before its 202"
            trigger_records.append(record)
        rule_ids = [json.loads(line)["activationId"] for record in trigger_records for line in record["logs"]]
        expected = set(accepted) | set(rule_ids)
        assert len(expected) == 12
        async with asyncio.timeout(60):
            while True:
                status, listing = await _call(session, hub_process, "GET", "namespaces/_/activations", name="slow", limit=200)
                assert status == 200
                ids = [item["activationId"] for item in listing]
                if set(ids) >= expected:
                    break
                await asyncio.sleep(0.2)

        async def observe() -> tuple[int, int]:
            status, counted = await _call(session, hub_process, "GET", "namespaces/_/activations", count=True)
            assert status == 200, counted
            return counted["activations"], await asyncio.to_thread(pending_rows, hub_process.home)

        # Quiet: nothing pending, and no new record for 2 s (a second run of a 1 s action would show).
        assert await wait_quiet(observe, lambda seen: seen[1] == 0, quiet_s=2, timeout_s=60) == (16, 0)
        assert sorted(ids) == sorted(expected), "each accepted activation has exactly one record"
        status, count = await _call(session, hub_process, "GET", "namespaces/_/activations", count=True)
        assert count == {"activations": 16}
        results = set()
        for activation_id in expected:
            status, result = await _call(session, hub_process, "GET", f"namespaces/_/activations/{activation_id}/result")
            assert result["status"] == "success"
            results.add(result["result"]["i"])
        assert results == set(range(8)) | {100, 101, 102, 103}
    log = (hub_process.home.parent / f"hub-{hub_process.port}.log").read_text()
    recovered = re.search(r"recovered (\d+) accepted activations without a record", log)
    assert recovered is not None and int(recovered.group(1)) > 0, "the kill must have interrupted work in flight"
