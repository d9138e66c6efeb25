"""Feed leases and shared feed counters in PostgreSQL (distributed mode; migration 11).

Every `triggerhub feeds` process is one `owner`. It runs a feed only while it holds that feed's
row in `feed_leases`; it renews all its rows every renewal interval, and a row whose `expires_ms`
has passed may be claimed by any process. Expiry is measured on the database's clock, so the
processes' clocks never need to agree. `feed_processes` lists the live owners (same renewal), which
tells each process its fair share. `feed_counts` holds each feed's received/fired/rejected
counters, added to by every process that counted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from triggerhub.errors import StoreError

log = logging.getLogger(__name__)

_NOW_MS = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"

_CLAIM = text(f"""
    INSERT INTO feed_leases (trigger_fqn, owner, expires_ms) VALUES (:trigger, :owner, {_NOW_MS} + :lease_ms)
    ON CONFLICT (trigger_fqn) DO UPDATE SET owner = excluded.owner, expires_ms = excluded.expires_ms
    WHERE feed_leases.expires_ms < {_NOW_MS} OR feed_leases.owner = excluded.owner
    RETURNING trigger_fqn""")
_RENEW = text(f"UPDATE feed_leases SET expires_ms = {_NOW_MS} + :lease_ms WHERE owner = :owner RETURNING trigger_fqn")
_JOIN = text(f"""
    INSERT INTO feed_processes (owner, expires_ms) VALUES (:owner, {_NOW_MS} + :lease_ms)
    ON CONFLICT (owner) DO UPDATE SET expires_ms = excluded.expires_ms""")
_FORGET_DEAD = text(f"DELETE FROM feed_processes WHERE expires_ms < {_NOW_MS}")
_LIVE = text(f"SELECT count(*) FROM feed_processes WHERE expires_ms >= {_NOW_MS}")
_HOLDER = text(f"SELECT owner FROM feed_leases WHERE trigger_fqn = :trigger AND expires_ms >= {_NOW_MS}")
_RELEASE = text("DELETE FROM feed_leases WHERE owner = :owner AND trigger_fqn IN :triggers").bindparams(
    bindparam("triggers", expanding=True))
_RELEASE_ALL = text("DELETE FROM feed_leases WHERE owner = :owner")
_LEAVE = text("DELETE FROM feed_processes WHERE owner = :owner")
_ADD_COUNTS = text("""
    INSERT INTO feed_counts (trigger_fqn, received, fired, rejected) VALUES (:trigger, :received, :fired, :rejected)
    ON CONFLICT (trigger_fqn) DO UPDATE SET received = feed_counts.received + excluded.received,
        fired = feed_counts.fired + excluded.fired, rejected = feed_counts.rejected + excluded.rejected""")
_COUNTS = text("SELECT received, fired, rejected FROM feed_counts WHERE trigger_fqn = :trigger")
_DROP_COUNTS = text("DELETE FROM feed_counts WHERE trigger_fqn = :trigger")


@dataclass(frozen=True, slots=True)
class FeedCounts:
    received: int = 0
    fired: int = 0
    rejected: int = 0


class SqlFeedLeases:
    """`FeedLeases` (engine/feed_manager.py) on the hub's PostgreSQL store."""

    def __init__(self, url: str, *, owner: str, lease_ms: int) -> None:
        self.owner = owner
        self._url = url
        self._lease_ms = lease_ms
        self._engine: AsyncEngine | None = None

    async def __aenter__(self) -> SqlFeedLeases:
        self._engine = create_async_engine(self._url, pool_size=2, max_overflow=2)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    async def join(self) -> int:
        """Announce (or keep announcing) this process; the number of live feeds processes."""
        async with self._transaction("announce this feeds process") as conn:
            await conn.execute(_JOIN, {"owner": self.owner, "lease_ms": self._lease_ms})
            await conn.execute(_FORGET_DEAD)
            return int((await conn.execute(_LIVE)).scalar_one())

    async def claim(self, trigger: str) -> bool:
        """Take the lease of `trigger` if it is free, expired or already ours."""
        async with self._transaction(f"claim the lease of the feed of trigger {trigger!r}") as conn:
            row = (await conn.execute(_CLAIM, {"trigger": trigger, "owner": self.owner,
                                                "lease_ms": self._lease_ms})).first()
        return row is not None

    async def renew(self) -> set[str]:
        """Extend every lease this process holds; the triggers it still holds."""
        async with self._transaction("renew feed leases") as conn:
            rows = await conn.execute(_RENEW, {"owner": self.owner, "lease_ms": self._lease_ms})
            return {row[0] for row in rows}

    async def holder(self, trigger: str) -> str | None:
        """The owner of the unexpired lease of `trigger`, if any."""
        async with self._transaction(f"read the lease of the feed of trigger {trigger!r}") as conn:
            value = (await conn.execute(_HOLDER, {"trigger": trigger})).scalar_one_or_none()
        return None if value is None else str(value)

    async def release(self, triggers: Iterable[str]) -> None:
        names = sorted(triggers)
        if not names:
            return
        async with self._transaction(f"release {len(names)} feed leases") as conn:
            await conn.execute(_RELEASE, {"owner": self.owner, "triggers": names})

    async def leave(self) -> None:
        """Clean shutdown: every lease of this process is free at once, for the others to claim."""
        async with self._transaction("release this process's feed leases") as conn:
            await conn.execute(_RELEASE_ALL, {"owner": self.owner})
            await conn.execute(_LEAVE, {"owner": self.owner})

    async def add_counts(self, trigger: str, counts: FeedCounts) -> None:
        async with self._transaction(f"add to the counters of the feed of trigger {trigger!r}") as conn:
            await conn.execute(_ADD_COUNTS, {"trigger": trigger, "received": counts.received,
                                             "fired": counts.fired, "rejected": counts.rejected})

    async def counts(self, trigger: str) -> FeedCounts:
        async with self._transaction(f"read the counters of the feed of trigger {trigger!r}") as conn:
            row = (await conn.execute(_COUNTS, {"trigger": trigger})).first()
        return FeedCounts() if row is None else FeedCounts(int(row[0]), int(row[1]), int(row[2]))

    async def drop_counts(self, trigger: str) -> None:
        async with self._transaction(f"drop the counters of the feed of trigger {trigger!r}") as conn:
            await conn.execute(_DROP_COUNTS, {"trigger": trigger})

    @contextlib.asynccontextmanager
    async def _transaction(self, doing: str) -> AsyncIterator[AsyncConnection]:
        if self._engine is None:
            raise StoreError(f"cannot {doing}: the feed leases are not open (use `async with`)")
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot {doing} ({type(exc).__name__}: {exc})") from exc
