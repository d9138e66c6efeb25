"""The embedded hub's entity cache sees entity writes made by another process sharing its store:
every entity write raises the store's entity generation, which the cache compares per read."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from tests.plugins.store import sqlite_url
from triggerhub.config import LimitsConfig
from triggerhub.engine.entities import Entities
from triggerhub.model import FullyQualifiedName, Parameter, Trigger
from triggerhub.store.sql import SqlStore

TICK = FullyQualifiedName("guest", "tick")

_OTHER_PROCESS = """
import asyncio, sys
from dataclasses import replace
from triggerhub.model import Parameter
from triggerhub.store.sql import SqlStore

async def main():
    store = SqlStore(sys.argv[1])
    await store.open()
    try:
        old = await store.get_entity("guest", "tick")
        await store.put_entities([replace(old, parameters=(Parameter("from", "the other process"),))])
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_a_write_by_another_process_reaches_the_next_cached_read(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    store = SqlStore(url)
    await store.open()
    try:
        entities = Entities(store, LimitsConfig(), max_code_bytes=1024, generation=store.get_entity_generation,
                            revalidate_reads=True)  # as the embedded hub builds it
        (written,) = await store.put_entities([Trigger("guest", "tick")])
        assert await store.get_entity_generation() == 1
        assert await entities.find(TICK, Trigger) == written
        other = await asyncio.create_subprocess_exec(sys.executable, "-c", _OTHER_PROCESS, url)
        assert await other.wait() == 0
        assert await store.get_entity_generation() == 2
        seen = await entities.find(TICK, Trigger)
        assert seen == replace(written, revision=2, parameters=(Parameter("from", "the other process"),))
    finally:
        await store.close()
