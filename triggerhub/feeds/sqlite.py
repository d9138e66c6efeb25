"""SQLite change feed (aiosqlite): every committed row change of one table in a user's database
file becomes one event.

At start the feed installs row triggers on the table that copy each change into a changelog
table (`triggerhub_changes`) in the writer's own transaction. SQLite has one writer at a time, so
changelog ids (AUTOINCREMENT: never reused, even after pruning) are in commit order and the feed
follows them by id: the last id emitted is the cursor, stored in the hub with the event. Changes
made while the hub is down wait in the changelog; delivered rows are pruned. DELETE of the feed
removes the triggers, the table's changelog rows and, when no feed is left, both tables.

Event data: {table, op, rowid, key, row, old, id, at}: `row` is the row after the change (null
for DELETE), `old` the row before it (null for INSERT), `key` the primary key columns (or the
rowid), BLOB values as hex strings, `at` the commit time in ISO 8601.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import aiosqlite

from triggerhub.clock import Clock
from triggerhub.errors import BadRequest, FeedError
from triggerhub.feeds.cursor import CursorEmit, CursorLoader
from triggerhub.feeds.kind import (BuiltinFeed, FeedContext, FeedKind, ParseContext, parse_operations,
                                  uninstall_or_warn)
from triggerhub.feeds.lifecycle import FeedTask, closed_on_failure, ignore_failure, translated
from triggerhub.model import JSON, TriggerEvent

log = logging.getLogger(__name__)

OPERATIONS = ("INSERT", "UPDATE", "DELETE")
EVENT_TYPE = "triggerhub.feed.sqlite.change"
CURSOR_KEY = "changes"
POLL_S = 0.05  # SQLite cannot notify another process: the feed checks PRAGMA data_version this often
RETRY_S = 1.0
PRUNE_S = 1.0  # delivered changelog rows are deleted at most this often
BUSY_TIMEOUT_MS = 5000
BATCH_ROWS = 500
_WITHOUT_ROWID_RE = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)
_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"


@dataclass(frozen=True, slots=True)
class SqliteConfig:
    database: str  # absolute path of an existing SQLite file
    table: str
    operations: tuple[str, ...] = OPERATIONS

    def to_json(self) -> dict[str, JSON]:
        return {"database": self.database, "table": self.table, "operations": list(self.operations)}


def parse_sqlite_config(params: Mapping[str, JSON]) -> SqliteConfig:
    database = params.get("database")
    if not isinstance(database, str) or not Path(database).is_absolute():
        raise BadRequest(f"database parameter '{database}' must be the absolute path of a SQLite file, "
                         "like /var/lib/app/app.db")
    table = params.get("table")
    if not isinstance(table, str) or not table.strip() or table.lower().startswith(("sqlite_", "triggerhub_")):
        raise BadRequest(f"table parameter '{table}' must name a table of the database (not sqlite_* or "
                         "triggerhub_*)")
    chosen = parse_operations(params, OPERATIONS)
    return SqliteConfig(str(Path(database)), table, chosen)


@contextlib.asynccontextmanager
async def _write_transaction(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; on any exception in the body ROLLBACK and re-raise it. BEGIN stays
    outside the `try`: when it failed (busy) or was cancelled there is no transaction, and a failing
    ROLLBACK would replace the original exception, which may be a CancelledError (the feed would
    never stop). A ROLLBACK failure is suppressed for the same reason."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        await conn.execute("COMMIT")  # a busy COMMIT leaves the transaction open: it is rolled back below
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")
        raise


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- installing


async def connect(config: SqliteConfig) -> aiosqlite.Connection:
    """Open the user's file read-write without ever creating it."""
    if not Path(config.database).is_file():
        raise FeedError(f"SQLite database '{config.database}' does not exist; create it first or fix the "
                        "database parameter")
    try:
        conn = await aiosqlite.connect(f"file:{quote(config.database)}?mode=rw", uri=True,
                                       isolation_level=None)  # autocommit: we BEGIN ourselves
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn
    except sqlite3.Error as exc:
        raise FeedError(f"SQLite database '{config.database}' could not be opened: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str  # as the database spells it
    columns: tuple[str, ...]
    key: tuple[str, ...]  # primary key columns; empty: the rowid is the key
    has_rowid: bool


@dataclass(frozen=True, slots=True)
class Subscription:
    token: str  # new whenever the subscription is made again: older cursors and event ids no longer apply
    since_id: int  # the changelog id at subscription: later ids are ours


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS triggerhub_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT, table_name TEXT NOT NULL, op TEXT NOT NULL, row_id INTEGER,
        new TEXT, old TEXT, at_ms INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS triggerhub_changes_by_table ON triggerhub_changes (table_name, id)",
    """CREATE TABLE IF NOT EXISTS triggerhub_subscriptions (
        subscriber TEXT PRIMARY KEY, table_name TEXT NOT NULL, token TEXT NOT NULL, since_id INTEGER NOT NULL,
        delivered_id INTEGER NOT NULL)""",
]


async def _table_info(conn: aiosqlite.Connection, config: SqliteConfig) -> TableInfo:
    async with conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
                            (config.table,)) as cursor:
        found = await cursor.fetchone()
    if found is None:
        async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                "AND name NOT LIKE 'triggerhub_%' ORDER BY name") as cursor:
            known = [row[0] for row in await cursor.fetchall()]
        raise FeedError(f"table '{config.table}' does not exist in {config.database}; known: "
                        f"{', '.join(known) or 'none'}; create it first or fix the table parameter")
    name, sql = found
    async with conn.execute(f"PRAGMA table_info({_quoted(name)})") as cursor:
        info = list(await cursor.fetchall())
    columns = tuple(row[1] for row in info)
    key = tuple(row[1] for row in sorted((r for r in info if r[5] > 0), key=lambda r: r[5]))
    return TableInfo(name, columns, key, not _WITHOUT_ROWID_RE.search(sql or ""))


def _trigger_ddl(table: TableInfo) -> list[str]:
    """One AFTER trigger per operation, each writing a changelog row in the writer's transaction."""
    def row_json(alias: str) -> str:
        # json_object refuses BLOBs, and a failing trigger would fail the user's write: hex them.
        pairs = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}', CASE WHEN typeof({alias}.{_quoted(c)}) = 'blob' "
                          f"THEN hex({alias}.{_quoted(c)}) ELSE {alias}.{_quoted(c)} END" for c in table.columns)
        return f"json_object({pairs})"
    literal = "'" + table.name.replace("'", "''") + "'"
    statements = []
    for op in OPERATIONS:
        alias = "OLD" if op == "DELETE" else "NEW"
        row_id = f"{alias}.rowid" if table.has_rowid else "NULL"
        new = "NULL" if op == "DELETE" else row_json("NEW")
        old = "NULL" if op == "INSERT" else row_json("OLD")
        statements += [
            f"DROP TRIGGER IF EXISTS {_quoted(_trigger_name(table.name, op))}",
            f"CREATE TRIGGER {_quoted(_trigger_name(table.name, op))} AFTER {op} ON {_quoted(table.name)} "
            f"BEGIN INSERT INTO triggerhub_changes (table_name, op, row_id, new, old, at_ms) "
            f"VALUES ({literal}, '{op}', {row_id}, {new}, {old}, {_NOW_MS}); END",
        ]
    return statements


def _trigger_name(table: str, op: str) -> str:
    return f"triggerhub_{op.lower()}_{table}"


async def install(conn: aiosqlite.Connection, config: SqliteConfig, subscriber: str) -> tuple[TableInfo, Subscription]:
    """Create (idempotently) the changelog, the table's triggers (re-made, so they copy the table's
    current columns) and the subscription. Raises FeedError for an unknown table."""
    async with _write_transaction(conn):
        table = await _table_info(conn, config)
        for statement in _SCHEMA:
            await conn.execute(statement)
        async with conn.execute("SELECT table_name, token, since_id FROM triggerhub_subscriptions "
                                "WHERE subscriber = ?", (subscriber,)) as cursor:
            existing = await cursor.fetchone()
        if existing is not None and existing[0] != table.name:  # an UPDATE pointed the feed at another table
            await conn.execute("DELETE FROM triggerhub_subscriptions WHERE subscriber = ?", (subscriber,))
            await _remove_table_if_unused(conn, existing[0])
            existing = None
        for statement in _trigger_ddl(table):
            await conn.execute(statement)
        if existing is None:
            async with conn.execute("SELECT COALESCE((SELECT seq FROM sqlite_sequence "
                                    "WHERE name = 'triggerhub_changes'), 0)") as cursor:
                row = await cursor.fetchone()
            since_id = int(row[0]) if row is not None else 0
            token = secrets.token_hex(6)
            await conn.execute("INSERT INTO triggerhub_subscriptions (subscriber, table_name, token, since_id, "
                               "delivered_id) VALUES (?, ?, ?, ?, ?)", (subscriber, table.name, token, since_id,
                                                                        since_id))
            log.info("sqlite feed %s installed change triggers on %s in %s", subscriber, table.name, config.database)
            subscription = Subscription(token, since_id)
        else:
            subscription = Subscription(existing[1], int(existing[2]))
    return table, subscription


async def _remove_table_if_unused(conn: aiosqlite.Connection, table_name: str) -> None:
    async with conn.execute("SELECT count(*) FROM triggerhub_subscriptions WHERE table_name = ?",
                            (table_name,)) as cursor:
        row = await cursor.fetchone()
    if row is not None and row[0] == 0:
        for op in OPERATIONS:
            await conn.execute(f"DROP TRIGGER IF EXISTS {_quoted(_trigger_name(table_name, op))}")
        await conn.execute("DELETE FROM triggerhub_changes WHERE table_name = ?", (table_name,))
        log.info("sqlite change triggers removed from %s", table_name)


async def uninstall(config: SqliteConfig, subscriber: str) -> None:
    """Forget `subscriber`; remove the triggers and changelog rows of a table nobody follows any
    more, and both triggerhub tables once no subscription is left."""
    if not Path(config.database).is_file():
        return  # nothing of ours can be left in a file that is gone
    conn = await connect(config)
    failure = f"SQLite database '{config.database}': could not remove the change triggers of '{config.table}'"
    try:
        async with translated((sqlite3.Error,), failure=failure), _write_transaction(conn):
            async with conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                    "AND name = 'triggerhub_subscriptions'") as cursor:
                row = await cursor.fetchone()
            if row is not None and row[0]:
                async with conn.execute("DELETE FROM triggerhub_subscriptions WHERE subscriber = ? "
                                        "RETURNING table_name", (subscriber,)) as cursor:
                    gone = [r[0] for r in await cursor.fetchall()]
                for table_name in gone:
                    await _remove_table_if_unused(conn, table_name)
                async with conn.execute("SELECT count(*) FROM triggerhub_subscriptions") as cursor:
                    left = await cursor.fetchone()
                if left is not None and left[0] == 0:
                    await conn.execute("DROP TABLE triggerhub_subscriptions")
                    await conn.execute("DROP TABLE IF EXISTS triggerhub_changes")
    finally:
        await conn.close()


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Position:
    """The last changelog id emitted, valid only for the subscription (`token`) it was read under."""

    token: str
    last_id: int

    def to_json(self) -> str:
        return json.dumps({"token": self.token, "lastId": self.last_id})

    @staticmethod
    def load(stored: str | None, subscription: Subscription) -> Position:
        state = json.loads(stored) if stored else {}
        if state.get("token") != subscription.token:  # never written, or for an earlier subscription
            return Position(subscription.token, subscription.since_id)
        return Position(subscription.token, max(int(state["lastId"]), subscription.since_id))


@dataclass(slots=True)
class _Session:
    """An open connection, the table it follows and where the feed stands in its changelog."""

    conn: aiosqlite.Connection
    table: TableInfo
    position: Position
    version: int | None = None  # PRAGMA data_version at the last read: it changes when anyone commits
    pruned_id: int = -1  # the last id pruned up to (-1: not yet since this connection opened)
    pruned_s: float = 0.0  # when it last tried to prune (monotonic)

    async def close(self, *, lost: bool) -> None:
        await self.conn.close()


class SqliteFeed:
    def __init__(self, config: SqliteConfig, *, trigger: str, clock: Clock, tasks: asyncio.TaskGroup,
                 load_cursor: CursorLoader, poll_s: float = POLL_S,
                 on_failed: Callable[[str], None] = ignore_failure) -> None:
        self._config = config
        self._run = FeedTask("sqlite", trigger=trigger, tasks=tasks, clock=clock, on_failed=on_failed, logger=log)
        self._load_cursor = load_cursor
        self._poll_s = poll_s
        self._source = f"sqlite://{config.database}"
        self._id_prefix = "sqlite:" + hashlib.sha256(f"{config.database}\0{trigger}".encode()).hexdigest()[:12]

    async def start(self, emit: CursorEmit) -> None:
        if self._run.running:
            return
        session = await self._open()
        await self._run.start(self._run.follow(session, reopen=self._open, step=lambda s: self._step(s, emit),
                                               lost=(sqlite3.Error,), where=self._config.database, retry_s=RETRY_S))
        log.info("%s reading changes of %s in %s from id %d", self._run.label, session.table.name,
                 self._config.database, session.position.last_id)

    async def stop(self) -> None:
        if await self._run.stop():
            log.info("%s stopped", self._run.label)

    async def _open(self) -> _Session:
        conn = await connect(self._config)
        async with closed_on_failure(conn.close, errors=(sqlite3.Error,),
                                     failure=f"SQLite database '{self._config.database}': could not install the "
                                             f"change triggers on '{self._config.table}'"):
            table, subscription = await install(conn, self._config, self._run.trigger)
        position = Position.load(await self._load_cursor(CURSOR_KEY), subscription)
        return _Session(conn, table, position, pruned_s=self._run.clock.monotonic_s())

    async def _step(self, session: _Session, emit: CursorEmit) -> None:
        """Emit what was committed since the last step (if anything was), prune, wait a poll interval."""
        # fetched whole in aiosqlite's thread: a statement left open would keep a read lock
        # that blocks the application's COMMIT (rollback-journal mode) until the loop runs
        versions = list(await session.conn.execute_fetchall("PRAGMA data_version"))
        current = int(versions[0][0]) if versions else 0
        if current != session.version:
            session.version = current
            session.position = await self._drain(session.conn, session.table, session.position, emit)
        # Pruning writes to the user's file: at most every PRUNE_S, so it rarely contends
        # with the application's own writers.
        clock = self._run.clock
        if session.position.last_id != session.pruned_id and clock.monotonic_s() - session.pruned_s >= PRUNE_S:
            session.pruned_s = clock.monotonic_s()
            if await self._prune(session.conn, session.table, session.position):
                session.pruned_id = session.position.last_id
        await clock.sleep(self._poll_s)

    async def _drain(self, conn: aiosqlite.Connection, table: TableInfo, position: Position,
                     emit: CursorEmit) -> Position:
        """Emit every change past the cursor."""
        ops = self._config.operations
        while True:
            async with conn.execute(
                    "SELECT id, op, row_id, new, old, at_ms FROM triggerhub_changes WHERE table_name = ? AND id > ? "
                    "ORDER BY id LIMIT ?", (table.name, position.last_id, BATCH_ROWS)) as cursor:
                rows = list(await cursor.fetchall())
            for row in rows:
                if row[1] in ops:
                    event = self._event(table, row, position.token)
                    cursor_value = (CURSOR_KEY, Position(position.token, row[0]).to_json())
                    await self._run.store(f"storing change {event.id}", lambda: emit(event, cursor=cursor_value))
                position = Position(position.token, row[0])
            if len(rows) < BATCH_ROWS:
                break
        return position

    async def _prune(self, conn: aiosqlite.Connection, table: TableInfo, position: Position) -> bool:
        """Mark what the hub stored as delivered and delete the changelog rows every subscriber of
        the table has; runs after the hub stored the events, so `delivered_id` never passes the
        hub's cursor. False when the file was busy (the next attempt prunes instead)."""
        try:
            async with _write_transaction(conn):
                await conn.execute("UPDATE triggerhub_subscriptions SET delivered_id = ? WHERE subscriber = ? "
                                   "AND token = ?", (position.last_id, self._run.trigger, position.token))
                await conn.execute("DELETE FROM triggerhub_changes WHERE table_name = ? AND id <= (SELECT "
                                   "min(delivered_id) FROM triggerhub_subscriptions WHERE table_name = ?)",
                                   (table.name, table.name))
        except sqlite3.OperationalError as exc:
            log.info("%s could not prune the changelog of %s yet (%s)", self._run.label, table.name, exc)
            return False
        return True

    def _event(self, table: TableInfo, row: Sequence[object], token: str) -> TriggerEvent:
        change_id, op, row_id, new, old, at_ms = row
        after = json.loads(str(new)) if new is not None else None
        before = json.loads(str(old)) if old is not None else None
        image = after if after is not None else before
        key: JSON = ({c: image.get(c) for c in table.key} if table.key and isinstance(image, dict)
                     else {"rowid": row_id} if table.has_rowid else None)
        at_iso = datetime.fromtimestamp(int(str(at_ms)) / 1000, timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        data: dict[str, JSON] = {"table": table.name, "op": str(op), "rowid": row_id if isinstance(row_id, int) else None,
                                 "key": key, "row": after, "old": before, "id": int(str(change_id)), "at": at_iso}
        return TriggerEvent(id=f"{self._id_prefix}:{token}:{change_id}", source=self._source, type=EVENT_TYPE,
                            trigger=self._run.fqn, subject=table.name, time_ms=int(str(at_ms)), data=data)


# --------------------------------------------------------------------------- the feed kind


def _parse(params: Mapping[str, JSON], _ctx: ParseContext) -> dict[str, JSON]:
    return parse_sqlite_config(params).to_json()


def _build(config: Mapping[str, JSON], ctx: FeedContext) -> SqliteFeed:
    return SqliteFeed(parse_sqlite_config(config), trigger=ctx.trigger, clock=ctx.clock, tasks=ctx.tasks,
                      load_cursor=ctx.load_cursor, on_failed=ctx.on_failed)


FEED_KIND = FeedKind(
    catalogue=BuiltinFeed("sqlite", "changes", "Fire a trigger for every committed INSERT, UPDATE or DELETE "
                          "of a table in a SQLite database file", ("database", "table", "operations")),
    parse=_parse, build=_build,
    uninstall=uninstall_or_warn(parse_sqlite_config, uninstall, lambda config: (
        f"its change triggers stay on {config.table} in {config.database}; drop the triggerhub_* triggers "
        "and tables yourself")),
)
