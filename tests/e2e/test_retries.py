"""Issue 14 in embedded mode, on a real `triggerhub up` process: retries with durable backoff,
dead letters with their alert trigger, and redrive; each scenario once as is and once with the
hub killed (-9) while retries wait in the store and while redriven runs are in flight."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.plugins.cli import HubProcess, free_port
from tests.plugins.distributed import ApiClient
from tests.plugins.retries import RELAXED_LIMITS, Kill, dead_letters_then_redrive, flaky_events

EVENTS = 1000


@pytest.fixture
def hub_up(tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "home", free_port(), extra_env=dict(RELAXED_LIMITS))
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
