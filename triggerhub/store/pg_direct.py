"""PostgreSQL's hot key reads on asyncpg directly, without SQLAlchemy per call.

The reads every event and invocation takes (an entity, an activation, a subject, the entity
generation). Through SQLAlchemy's asyncpg adapter each costs BEGIN, the statement and ROLLBACK
(three round trips) plus the adapter's greenlet hops; here it is one round trip on a pooled
connection, and asyncpg prepares each statement once per connection. The same statements as
`statements.py`, with the same answers. Writes keep the SQLAlchemy Core operations
(operations.py), which batch many callers into one transaction already.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.engine import URL

SELECT_ENTITY = "SELECT collection, revision, doc FROM entities WHERE path = $1 AND name = $2"
SELECT_ACTIVATION = "SELECT doc FROM activations WHERE activation_id = $1 AND namespace = $2"
SELECT_SUBJECT = "SELECT doc FROM subjects WHERE uuid = $1"
SELECT_ENTITY_GENERATION = "SELECT generation FROM entity_generation WHERE id = 1"

POOL_MAX_SIZE = 10
COMMAND_TIMEOUT_S = 30.0
# What a read may raise: the caller turns these into StoreError.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
                                                   TimeoutError)


class PgReads:
    """`open()` makes the pool (one connection at first); each read borrows a connection once."""

    def __init__(self, url: URL) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=POOL_MAX_SIZE,
                                               command_timeout=COMMAND_TIMEOUT_S, reset=_keep_session)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def entity(self, path: str, name: str) -> tuple[str, int, str] | None:
        row = await self._opened().fetchrow(SELECT_ENTITY, path, name)
        return None if row is None else (row[0], row[1], row[2])

    async def activation_doc(self, namespace: str, activation_id: str) -> str | None:
        doc: str | None = await self._value(SELECT_ACTIVATION, activation_id, namespace)
        return doc

    async def subject_doc(self, uuid: str) -> str | None:
        doc: str | None = await self._value(SELECT_SUBJECT, uuid)
        return doc

    async def entity_generation(self) -> int:
        return int(await self._value(SELECT_ENTITY_GENERATION) or 0)

    async def _value(self, query: str, *args: Any) -> Any:
        return await self._opened().fetchval(query, *args)

    def _opened(self) -> asyncpg.Pool:
        if self._pool is None:
            raise asyncpg.InterfaceError("the PostgreSQL read pool is not open; call SqlStore.open() first")
        return self._pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset between borrowers, which by default costs a round trip (RESET ALL, UNLISTEN,
    advisory unlocks): these single-statement reads change no session state, so there is nothing
    to reset."""
