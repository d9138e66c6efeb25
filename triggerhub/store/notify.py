"""Notices of derived-trigger changes between processes: PostgreSQL LISTEN on one connection.

store/derived.py ends a transaction that put a derived event in the outbox, or armed a deadline
earlier than its key had, with a NOTIFY carrying that deadline (0: look now). `PgDeriveNotices`
LISTENs on a connection of its own and hands each notice to a listener (a worker's derive loop),
so that an idle loop need not read the store every few seconds to see what the feeds process,
the controllers and the other workers did. A lost connection is reported (the loop then looks
more often) and reopened with backoff; each (re)start is reported too, since notices sent while
nobody listened are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.engine import make_url

from triggerhub.store.base import DeriveNoticeListener
from triggerhub.store.derived import NOTICE_CHANNEL
from triggerhub.store.pg_direct import DRIVER_ERRORS

log = logging.getLogger(__name__)

APPLICATION_NAME = "triggerhub derive notices"  # how its session shows in pg_stat_activity
CONNECT_TIMEOUT_S = 10.0
CHECK_S = 15.0  # a connection that answers no query within CHECK_TIMEOUT_S is given up and reopened
CHECK_TIMEOUT_S = 5.0
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 15.0


class PgDeriveNotices:
    """`DeriveNotices` on `postgresql+asyncpg://...` (the store's URL)."""

    def __init__(self, url: str, *, reconnect_min_s: float = RECONNECT_MIN_S) -> None:
        parsed = make_url(url)
        self._reconnect_min_s = reconnect_min_s
        self._dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._where = f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"  # no credentials in logs

    def __repr__(self) -> str:
        return f"PgDeriveNotices({self._where!r})"

    @contextlib.asynccontextmanager
    async def listen(self, listener: DeriveNoticeListener) -> AsyncIterator[None]:
        async with asyncio.TaskGroup() as tasks:
            listening = tasks.create_task(self._listen(listener), name="derive notices")
            try:
                yield
            finally:
                listening.cancel()

    async def _listen(self, listener: DeriveNoticeListener) -> None:
        delay_s = self._reconnect_min_s
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S,
                                             server_settings={"application_name": APPLICATION_NAME})
            except DRIVER_ERRORS as exc:
                log.warning("derive notices: cannot connect to PostgreSQL at %s (%s); again in %.1f s",
                            self._where, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = max(min(2 * delay_s, RECONNECT_MAX_S), self._reconnect_min_s)
                continue
            try:
                await self._follow(conn, listener)
            except DRIVER_ERRORS as exc:
                log.warning("derive notices: the connection to %s was lost (%s); reconnecting in %.1f s",
                            self._where, exc, self._reconnect_min_s)
                delay_s = self._reconnect_min_s
            finally:
                listener.derive_notices_live(False)
                conn.terminate()
            await asyncio.sleep(delay_s)

    async def _follow(self, conn: asyncpg.Connection, listener: DeriveNoticeListener) -> None:
        """LISTEN, report the notices live, then check the connection now and then until it fails."""
        lost = asyncio.Event()

        def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            try:
                due_ms = int(payload)
            except ValueError:  # not ours: someone else NOTIFYs on the channel; look anyway
                log.warning("derive notices: payload %r on %s is not a time in ms", payload[:40], NOTICE_CHANNEL)
                due_ms = 0
            listener.derive_changed(due_ms)

        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(NOTICE_CHANNEL, heard)
        log.info("derive notices: listening on %s at %s", NOTICE_CHANNEL, self._where)
        listener.derive_notices_live(True)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_S):
                    await lost.wait()
            if lost.is_set():
                raise asyncpg.InterfaceError("the connection was closed")
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await conn.execute("SELECT 1")


__all__ = ["APPLICATION_NAME", "PgDeriveNotices"]
