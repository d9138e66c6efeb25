"""Round trips through each real service the scripts in scripts/services/ start."""

from __future__ import annotations

import asyncpg
import pytest

from tests.plugins.services import asyncpg_dsn


@pytest.mark.postgres
async def test_postgres_session_database_answers_a_query(postgres_url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        await connection.execute("CREATE TABLE readings (sensor text PRIMARY KEY, celsius real)")
        await connection.execute("INSERT INTO readings VALUES ('t1', 21.5)")
        rows = await connection.fetch("SELECT sensor, celsius FROM readings")
        database = await connection.fetchval("SELECT current_database()")
    finally:
        await connection.close()
    assert [tuple(row) for row in rows] == [("t1", 21.5)]
    assert database == postgres_url.rsplit("/", 1)[1]


@pytest.mark.postgres
async def test_fresh_pg_url_is_a_new_empty_database(postgres_url: str, fresh_pg_url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(fresh_pg_url))
    try:
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        wal_level = await connection.fetchval("SHOW wal_level")
    finally:
        await connection.close()
    assert fresh_pg_url != postgres_url
    assert fresh_pg_url.startswith("postgresql+asyncpg://triggerhub:")
    assert tables == 0
    assert wal_level == "logical"
