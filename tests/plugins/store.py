"""Store fixtures: a fresh SqlStore per test, on a SQLite file and on a fresh PostgreSQL database.

`store_url` is parametrized over both dialects; the PostgreSQL case takes a database created for
the one test by `fresh_pg_url` (tests/plugins/services.py), so it fails in CI when PostgreSQL
did not start and skips with the reason elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from triggerhub.store.base import Store
from triggerhub.store.sql import SqlStore

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=DIALECTS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming an empty database: a SQLite file in tmp_path or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "store.db")
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """An open SqlStore on an empty, migrated database; closed after the test."""
    opened = SqlStore(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def as_store(store: SqlStore) -> Store:
    """Typed view of a SqlStore as the Store seam; mypy checks here that SqlStore satisfies it."""
    return store
