"""Issue 14 in embedded mode, on a real `triggerhub up` process: retries with durable backoff,
dead letters with their alert trigger, and redrive; each scenario once as is and once with the
hub killed (-9) while retries wait in the store and while redriven runs are in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.plugins.cli import HubProcess, free_port
from tests.plugins.distributed import ApiClient
from tests.plugins.retries import (
    FAILING, FIXED, RELAXED_LIMITS, Kill, Quiet, dead_letter_count, dead_letters_then_redrive, flaky_events, put,
    put_action, settle,
)

EVENTS = 1000


@pytest.fixture
def hub_up(tmp_path: Path) -> Iterator[HubProcess]:
    # TRIGGERHUB_AUTH_CACHE_S=0: a namespace default set with `triggerhub admin` applies at once
    hub = HubProcess(tmp_path / "home", free_port(), extra_env={**RELAXED_LIMITS, "TRIGGERHUB_AUTH_CACHE_S": "0"})
    hub.home.mkdir()
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
async def client(hub_up: HubProcess) -> AsyncIterator[ApiClient]:
    async with aiohttp.ClientSession() as session:
        yield ApiClient(hub_up.apihost, hub_up.auth, session)


def _rows(home: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(f"file:{home / 'triggerhub.db'}?mode=ro", uri=True)) as db:
        pending = int(db.execute("SELECT count(*) FROM pending").fetchone()[0])
        return pending, int(db.execute("SELECT count(*) FROM retries").fetchone()[0])


def _kill(hub: HubProcess) -> Kill:
    async def kill() -> None:
        hub.kill9()
        pending, retries = _rows(hub.home)
        assert pending + retries > 0, "the kill must interrupt waiting retries or runs in flight"
        await asyncio.to_thread(hub.start)
    return kill


@pytest.mark.parametrize("killed", [False, True], ids=["as-is", "kill-9"])
async def test_events_failing_twice_end_in_three_records_each(client: ApiClient, hub_up: HubProcess, killed: bool):
    await flaky_events(client, lambda: asyncio.to_thread(_rows, hub_up.home), events=EVENTS,
                       kill=_kill(hub_up) if killed else None)


@pytest.mark.parametrize("killed", [False, True], ids=["as-is", "kill-9"])
async def test_always_failing_events_are_dead_letters_until_redriven(client: ApiClient, hub_up: HubProcess,
                                                                     killed: bool):
    await dead_letters_then_redrive(client, lambda: asyncio.to_thread(_rows, hub_up.home), events=EVENTS,
                                    kill=_kill(hub_up) if killed else None)


async def test_cli_rule_options_dead_letters_redrive_and_the_namespace_default(client: ApiClient, hub_up: HubProcess):
    def rows() -> asyncio.Future[tuple[int, int]]:
        return asyncio.ensure_future(asyncio.to_thread(_rows, hub_up.home))

    await put_action(client, "failing", FAILING)
    await put_action(client, "fixed", FIXED)
    await put(client, "triggers/t", {})
    await put(client, "triggers/alerts", {})
    created = hub_up.cli("rule", "create", "r", "t", "failing", "--retry", '{"maxAttempts": 2, "initialDelayMs": 10}',
                         "--dead-letter", "/_/alerts")
    assert created.stdout == "ok: created rule r\n"
    status, rule = await client.call("GET", "namespaces/_/rules/r")
    assert (rule["retry"], rule["deadLetter"]) == ({"maxAttempts": 2, "initialDelayMs": 10}, {"trigger": "/_/alerts"})
    for i in range(3):
        assert (await client.call("POST", "namespaces/_/triggers/t", {"i": i}))[0] == 202
    assert await settle(client, rows, "failing") == Quiet({"failing": 6}, 0, 0)
    assert hub_up.cli("rule", "deadletters", "r", "--count").stdout == "3 dead letters\n"
    letters = json.loads(hub_up.cli("--json", "rule", "deadletters", "r").stdout)
    assert [letter["reason"] for letter in letters] == ["application error after 2 attempt(s) (retry.maxAttempts is 2)"] * 3
    table = hub_up.cli("rule", "deadletters", "r").stdout
    assert all(letter["id"] in table and letter["activationId"] in table for letter in letters)

    redriven = hub_up.cli("rule", "redrive", "r", "--id", letters[0]["id"], "--action", "fixed")
    assert redriven.stdout == "ok: redrove 1 dead letters of rule r\n"
    assert await settle(client, rows, "failing", "fixed") == Quiet({"failing": 6, "fixed": 1}, 0, 0)
    assert [l["id"] for l in json.loads(hub_up.cli("--json", "rule", "deadletters", "r").stdout)] == \
        [l["id"] for l in letters[1:]]
    refused = hub_up.cli("rule", "create", "bad", "t", "failing", "--retry", '{"maxAttempts": 0}', check=False)
    assert refused.returncode == 1 and "retry.maxAttempts is 0; give a whole number from 1 to 100" in refused.stderr

    # The namespace default: rules without `retry` get it.
    partial = hub_up.cli("admin", "limits", "set", "guest", "--retryInitialDelayMs", "10", check=False)
    assert (partial.returncode, partial.stderr) == (1, "Error: the namespace retry default needs --retryMaxAttempts "
                                                       "(1 or more); the other --retry* options only shape it\n")
    limits = hub_up.cli("admin", "limits", "set", "guest", "--retryMaxAttempts", "2", "--retryInitialDelayMs", "10")
    assert json.loads(limits.stdout) == {"retryMaxAttempts": 2, "retryInitialDelayMs": 10}
    await put_action(client, "failing2", FAILING)
    await put(client, "triggers/t2", {})
    assert hub_up.cli("rule", "create", "plain", "t2", "failing2").returncode == 0
    assert (await client.call("POST", "namespaces/_/triggers/t2", {"i": 9}))[0] == 202
    assert await settle(client, rows, "failing2") == Quiet({"failing2": 2}, 0, 0)
    assert await dead_letter_count(client, "plain") == 1

    # Its `on` list: a bad outcome is refused and changes nothing; a good one is shown by name.
    bad = hub_up.cli("admin", "limits", "set", "guest", "--retryOn", "timeout,crash", check=False)
    assert (bad.returncode, bad.stderr.splitlines()[-1]) == (2, "Error: --retryOn: unknown outcome 'crash'; allowed: "
                                                             "'application error', 'developer error', 'internal error', "
                                                             "'timeout'")
    assert json.loads(hub_up.cli("admin", "limits", "get", "guest").stdout) == {
        "retryMaxAttempts": 2, "retryInitialDelayMs": 10}
    only_timeouts = hub_up.cli("admin", "limits", "set", "guest", "--retryOn", "timeout, internal error")
    assert json.loads(only_timeouts.stdout) == {"retryMaxAttempts": 2, "retryInitialDelayMs": 10,
                                                "retryOn": ["internal error", "timeout"]}
    assert (await client.call("POST", "namespaces/_/triggers/t2", {"i": 10}))[0] == 202
    assert await settle(client, rows, "failing2") == Quiet({"failing2": 3}, 0, 0), "an application error: no retry"
    status, letters = await client.call("GET", "namespaces/_/rules/plain/deadletters")
    assert status == 200 and len(letters) == 2
    assert letters[-1]["reason"] == "application error (retry.on does not include it) after 1 attempt(s)"
