"""Replication slots of the PostgreSQL feed's logical mode: what the server must allow, the table
a feed follows, owning a slot (an advisory lock per slot name), dropping it, finding orphans, and
the LSN and snapshot arithmetic of reading one. feeds/pg_logical.py is the feed that uses them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from triggerhub.errors import FeedError
from triggerhub.feeds.postgres import connect_errors, source_errors

if TYPE_CHECKING:  # imported where a feed connects: a hub on SQLite never loads asyncpg
    import asyncpg

PLUGIN = "wal2json"
SLOT_PREFIX = "triggerhub_"
CONNECT_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- LSNs and snapshots


def lsn_int(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def visible_in_snapshot(xid: int, snapshot: str) -> bool:
    """Whether the 32-bit `xid` had committed in `snapshot` (pg_current_snapshot()::text,
    xmin:xmax:xip,...): its changes were in the snapshot's rows and must not be emitted again."""
    xmin_text, xmax_text, running = snapshot.split(":")
    xmin, xmax = int(xmin_text), int(xmax_text)
    full = (xmax >> 32 << 32) | xid  # in the epoch that puts it within 2**31 of xmax, as PostgreSQL compares
    if full > xmax + (1 << 31):
        full -= 1 << 32
    elif full < xmax - (1 << 31):
        full += 1 << 32
    return full < xmin or (full < xmax and str(full) not in running.split(","))


# --------------------------------------------------------------------------- checks and errors


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFacts:
    wal_level: str
    role: str
    can_replicate: bool  # REPLICATION attribute or superuser


def server_problem(facts: ServerFacts, location: str) -> str | None:
    """Why logical mode cannot run on this server, naming the value and what to do; None if it can."""
    if facts.wal_level != "logical":
        return (f"PostgreSQL at {location} has wal_level = '{facts.wal_level}'; mode logical needs "
                "wal_level = logical (set it in postgresql.conf and restart the server), or use mode outbox")
    if not facts.can_replicate:
        return (f"role '{facts.role}' at {location} may not use replication slots; a superuser can grant it "
                f"with ALTER ROLE {facts.role} REPLICATION, or use mode outbox")
    return None


def _quote_filter(name: str) -> str:
    """A name as wal2json's add-tables option spells it (special characters escaped)."""
    return re.sub(r"([ ',.*\\])", r"\\\1", name)


@dataclass(frozen=True, slots=True)
class Source:
    """The resolved table (or schema, for schema.*) of a feed."""

    schema: str
    table: str | None  # None: every table of the schema
    quoted: str | None  # the table as SQL names it, for the snapshot

    @property
    def filter(self) -> str:
        return f"{_quote_filter(self.schema)}.{_quote_filter(self.table) if self.table else '*'}"


async def resolve_source(conn: asyncpg.Connection, table: str, location: str) -> Source:
    """The table `table` names (orders, public.orders, public.*), or FeedError naming it and the
    tables that do exist."""
    if table.endswith("*"):
        schema_part = table[:-2] or None
        schema = await conn.fetchval(
            "SELECT nspname FROM pg_namespace WHERE oid = to_regnamespace(coalesce($1, current_schema()))",
            schema_part)
        if schema is None:
            raise FeedError(f"schema '{schema_part}' of table parameter '{table}' does not exist in "
                            f"{location}; create it first or fix the table parameter")
        return Source(schema, None, None)
    found = await conn.fetchrow(
        "SELECT c.oid::regclass::text AS quoted, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        table)
    if found is None or found["kind"] not in ("r", "p"):
        known = await conn.fetchval(
            "SELECT string_agg(quote_ident(table_schema) || '.' || quote_ident(table_name), ', ' ORDER BY 1) "
            "FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')")
        raise FeedError(f"table '{table}' does not exist in {location}; create it first or fix "
                        f"the table parameter (tables there: {known or 'none'})")
    return Source(found["schema"], found["name"], found["quoted"])


def lock_key(slot: str) -> int:
    """The advisory lock a feed holds while it owns `slot` (a signed 64-bit key)."""
    return int.from_bytes(hashlib.sha256(f"triggerhub slot {slot}".encode()).digest()[:8], "big", signed=True)


async def slot_in_use(conn: asyncpg.Connection, slot: str, location: str) -> FeedError:
    holder = await conn.fetchrow(
        "SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 & x'ffffffffffffffff'::bigint",
        lock_key(slot))
    active = await conn.fetchval("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot)
    pid = holder["pid"] if holder else active
    who = f" ({holder['application_name']})" if holder and holder["application_name"] else ""
    return FeedError(f"replication slot '{slot}' in {location} is in use by another process (PostgreSQL pid "
                     f"{pid}{who}); stop the feed or client that reads it, or give this feed its own slot "
                     "with the slot parameter")


# --------------------------------------------------------------------------- removing and orphans


async def drop_slot(dsn: str, slot: str, location: str) -> bool:
    """Drop `slot` if it exists (True when it did); FeedError when the server cannot be reached or
    another process reads the slot."""
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except connect_errors() as exc:
        raise FeedError(f"PostgreSQL at {location} refused or did not answer: {exc}") from exc
    try:
        return bool(await conn.fetchval("SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots "
                                        "WHERE slot_name = $1", slot))
    except asyncpg.ObjectInUseError as exc:
        raise await slot_in_use(conn, slot, location) from exc
    except source_errors() as exc:
        raise FeedError(f"PostgreSQL at {location}: {exc}") from exc
    finally:
        await conn.close()


async def orphaned_slots(dsn: str, known: set[str]) -> list[tuple[str, int]]:
    """(slot, retained WAL bytes) of the slots of this database named like ours but owned by no feed."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        rows = await conn.fetch(
            "SELECT slot_name, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint AS retained "
            "FROM pg_replication_slots WHERE database = current_database() AND slot_type = 'logical' "
            "AND starts_with(slot_name::text, $1) ORDER BY slot_name", SLOT_PREFIX)
    finally:
        await conn.close()
    return [(r["slot_name"], r["retained"]) for r in rows if r["slot_name"] not in known]
