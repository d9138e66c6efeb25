"""PostgreSQL change feed (asyncpg): every committed row change of one table becomes one event.

A row trigger on the table copies each change into an outbox table (`triggerhub_changes`) in the
writer's own transaction and NOTIFYs; the feed LISTENs, and on each notification, at start and
every POLL_S as a safety net reads the outbox past its cursor. Changes made while the hub is down
wait in the outbox. See `Position` for why the cursor is a pair of snapshots, not just an id.

Event data: {table, op, row, old, id, at}: `row` is the row after the change (null for DELETE),
`old` the row before it (null for INSERT). DELETE of the feed drops the table's trigger once no
feed subscribes to the table any more, with its outbox rows. Outbox rows every subscriber of their
table has delivered are pruned after each batch the hub stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from triggerhub.clock import Clock
from triggerhub.errors import BadRequest, FeedError
from triggerhub.feeds.cursor import CursorEmit, CursorLoader
from triggerhub.feeds.kind import (SECRET_MASK, BuiltinFeed, FeedContext, FeedKind, ParseContext, parse_operations,
                                  uninstall_or_warn)
from triggerhub.feeds.lifecycle import FeedTask, closed_on_failure, ignore_failure, translated
from triggerhub.model import JSON, TriggerEvent

if TYPE_CHECKING:  # asyncpg is imported where a feed connects: a hub on SQLite never loads it
    import asyncpg

log = logging.getLogger(__name__)

OPERATIONS = ("INSERT", "UPDATE", "DELETE")
EVENT_TYPE = "triggerhub.feed.postgres.change"
CHANNEL = "triggerhub_changes"
CURSOR_KEY = "changes"
DSN_MASK = SECRET_MASK
POLL_S = 5.0
RETRY_S = 1.0
CONNECT_TIMEOUT_S = 10.0
BATCH_ROWS = 500
def source_errors() -> tuple[type[Exception], ...]:
    """What a lost PostgreSQL source raises (a function, so that asyncpg loads with the first feed)."""
    import asyncpg

    return (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


def connect_errors() -> tuple[type[Exception], ...]:
    """What connecting to PostgreSQL raises when the server refuses or does not answer."""
    return (*source_errors(), TimeoutError)
_LOCK_KEY = 0x74686368  # advisory lock serialising installs and removals ("thch")
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TABLE_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})?$")


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    dsn: str
    table: str  # as the user wrote it: orders, public.orders, "Mixed"."Case"
    operations: tuple[str, ...] = OPERATIONS
    columns: tuple[str, ...] | None = None  # None: every column

    @property
    def location(self) -> str:
        """host:port/database: names the database without credentials."""
        parts = urlsplit(self.dsn)
        return f"{parts.hostname}:{parts.port or 5432}{parts.path}"

    def to_json(self, *, redact: bool) -> dict[str, JSON]:
        return {"dsn": redact_dsn(self.dsn) if redact else self.dsn, "table": self.table,
                "operations": list(self.operations),
                "columns": list(self.columns) if self.columns is not None else None}


def redact_dsn(dsn: JSON) -> JSON:
    """The DSN with its password masked (anything that is not a URL is masked whole)."""
    if not isinstance(dsn, str):
        return dsn
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return DSN_MASK
    if password is None:
        return dsn
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:{DSN_MASK}@{host}"))


def parse_dsn(params: Mapping[str, JSON]) -> str:
    """The `dsn` parameter of both PostgreSQL modes; BadRequest, showing the value with its password
    masked, unless it is a postgresql:// URL."""
    dsn = params.get("dsn")
    if not isinstance(dsn, str) or not _valid_dsn(dsn):
        raise BadRequest(f"dsn parameter '{redact_dsn(dsn)}' must be a URL like "
                         "postgresql://user:password@host:5432/database")
    return dsn


def parse_postgres_config(params: Mapping[str, JSON]) -> PostgresConfig:
    dsn = parse_dsn(params)
    table = params.get("table")
    if not isinstance(table, str) or not _TABLE_RE.match(table):
        raise BadRequest(f"table parameter '{table}' must name a table like orders or public.orders")
    chosen = parse_operations(params, OPERATIONS)
    columns = params.get("columns")
    columns = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else columns
    if columns is not None and (not isinstance(columns, list) or not columns
                                or not all(isinstance(c, str) and c for c in columns)):
        raise BadRequest(f"columns parameter '{params.get('columns')}' must be a list of column names")
    return PostgresConfig(dsn, table, chosen, tuple(columns) if columns is not None else None)


def _valid_dsn(dsn: str) -> bool:
    try:
        parts = urlsplit(dsn)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    return parts.scheme in ("postgresql", "postgres") and bool(parts.hostname) and port_ok \
        and len(parts.path) > 1


# --------------------------------------------------------------------------- installing


async def connect(config: PostgresConfig) -> asyncpg.Connection:
    import asyncpg

    try:
        return await asyncpg.connect(config.dsn, timeout=CONNECT_TIMEOUT_S)
    except connect_errors() as exc:
        raise FeedError(f"PostgreSQL at {config.location} refused or did not answer: {exc}; "
                        "check the dsn parameter and that the server runs") from exc


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int  # changes when the feed is deleted and created again: older cursors no longer apply
    table: str  # schema.name, as the outbox records it
    since: str  # snapshot taken at subscription: the changes of transactions it does not see are ours


async def install(conn: asyncpg.Connection, config: PostgresConfig, subscriber: str) -> Subscription:
    """Create (idempotently) the outbox, the capture function, the table's trigger and our
    subscription row; returns the subscription. Raises FeedError for a missing table or column."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        found = await conn.fetchrow(
            "SELECT c.oid::regclass::text AS quoted, n.nspname || '.' || c.relname AS name, c.relkind::text AS kind "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            config.table)
        if found is None or found["kind"] not in ("r", "p"):
            raise FeedError(f"table '{config.table}' does not exist in {config.location}; create it first or "
                            "fix the table parameter")
        await _check_columns(conn, config, found["quoted"])
        schema = await conn.fetchval("SELECT quote_ident(current_schema())")
        for statement in _outbox_ddl(schema):
            await conn.execute(statement)
        moved = await conn.fetch(f"DELETE FROM {schema}.triggerhub_subscriptions WHERE subscriber = $1 "
                                 "AND table_name <> $2 RETURNING table_name", subscriber, found["name"])
        for row in moved:  # an UPDATE pointed the feed at another table
            await _drop_trigger_if_unused(conn, schema, row["table_name"])
        exists = await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass "
                                     "AND tgname = 'triggerhub_changes'", found["quoted"])
        if not exists:
            await conn.execute(f"CREATE TRIGGER triggerhub_changes AFTER INSERT OR UPDATE OR DELETE ON "
                               f"{found['quoted']} FOR EACH ROW EXECUTE FUNCTION {schema}.triggerhub_capture()")
            log.info("postgres feed %s installed the change trigger on %s", subscriber, found["name"])
        await conn.execute(f"INSERT INTO {schema}.triggerhub_subscriptions (subscriber, table_name, since) "
                           "VALUES ($1, $2, pg_current_snapshot()::text) ON CONFLICT DO NOTHING",
                           subscriber, found["name"])
        row = await conn.fetchrow(f"SELECT id, since FROM {schema}.triggerhub_subscriptions "
                                  "WHERE subscriber = $1 AND table_name = $2", subscriber, found["name"])
    return Subscription(row["id"], found["name"], row["since"])


async def _check_columns(conn: asyncpg.Connection, config: PostgresConfig, quoted: str) -> None:
    if config.columns is None:
        return
    names = {r["attname"] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
        quoted)}
    unknown = [c for c in config.columns if c not in names]
    if unknown:
        raise FeedError(f"columns {', '.join(unknown)} are not in table '{config.table}'; "
                        f"known: {', '.join(sorted(names))}")


def _outbox_ddl(schema: str) -> list[str]:
    # txid: the writer's transaction, which Position compares with snapshots.
    return [
        f"""CREATE TABLE IF NOT EXISTS {schema}.triggerhub_changes (
            id bigserial PRIMARY KEY, table_name text NOT NULL, op text NOT NULL, "row" jsonb, old jsonb,
            at timestamptz NOT NULL DEFAULT now(), txid xid8 NOT NULL DEFAULT pg_current_xact_id())""",
        f"CREATE INDEX IF NOT EXISTS triggerhub_changes_by_txid ON {schema}.triggerhub_changes (txid)",
        f"""CREATE TABLE IF NOT EXISTS {schema}.triggerhub_subscriptions (
            subscriber text NOT NULL, table_name text NOT NULL, id bigserial UNIQUE, since text NOT NULL,
            PRIMARY KEY (subscriber, table_name))""",
        # the `after` snapshot of the last batch the subscriber's hub stored: outbox rows every
        # subscriber of their table has delivered are pruned
        f"ALTER TABLE {schema}.triggerhub_subscriptions ADD COLUMN IF NOT EXISTS delivered text",
        f"""CREATE OR REPLACE FUNCTION {schema}.triggerhub_capture() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE change_id bigint;
            BEGIN
              INSERT INTO {schema}.triggerhub_changes (table_name, op, "row", old)
              VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
                      CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
                      CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END)
              RETURNING id INTO change_id;
              PERFORM pg_notify('{CHANNEL}', change_id::text);
              RETURN NULL;
            END $$""",
    ]


async def _drop_trigger_if_unused(conn: asyncpg.Connection, schema: str, table_name: str) -> None:
    users = await conn.fetchval(f"SELECT count(*) FROM {schema}.triggerhub_subscriptions WHERE table_name = $1",
                                table_name)
    quoted = await conn.fetchval(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname || '.' || c.relname = $1", table_name)
    if users == 0:
        await conn.execute(f"DELETE FROM {schema}.triggerhub_changes WHERE table_name = $1", table_name)
    if users == 0 and quoted is not None:
        await conn.execute(f"DROP TRIGGER IF EXISTS triggerhub_changes ON {quoted}")
        log.info("postgres change trigger dropped from %s", table_name)


async def uninstall(config: PostgresConfig, subscriber: str) -> None:
    """Forget `subscriber`; drop the trigger and the outbox rows of every table nobody subscribes
    to any more. The outbox table stays: other feeds (or hubs) may still be reading it."""
    conn = await connect(config)
    failure = f"PostgreSQL at {config.location}: could not remove the change trigger of '{config.table}'"
    try:
        async with translated(source_errors(), failure=failure), conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            schema = await conn.fetchval("SELECT quote_ident(current_schema())")
            if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.triggerhub_subscriptions") is None:
                return
            gone = await conn.fetch(f"DELETE FROM {schema}.triggerhub_subscriptions WHERE subscriber = $1 "
                                    "RETURNING table_name", subscriber)
            for row in gone:
                await _drop_trigger_if_unused(conn, schema, row["table_name"])
    finally:
        await conn.close()


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Position:
    """Where the feed stands in the outbox.

    Outbox ids are taken when a row is written, but transactions commit in any order: a plain
    "id > last" cursor would skip a smaller id committed after a larger one was read. So the
    feed reads in batches between two snapshots: a batch is the rows of exactly the
    transactions visible in `upto` and not in `after` (both fixed, so a batch can be re-read
    after a restart), in id order; `last_id` is the last row of the batch already emitted.
    """

    subscription: int
    after: str
    upto: str | None = None
    last_id: int = 0

    def to_json(self) -> str:
        return json.dumps({"sub": self.subscription, "after": self.after, "upto": self.upto, "lastId": self.last_id})

    @staticmethod
    def load(stored: str | None, subscription: Subscription) -> Position:
        state = json.loads(stored) if stored else {}
        if state.get("sub") != subscription.id:  # never written, or written for an earlier CREATE
            return Position(subscription.id, subscription.since)
        return Position(subscription.id, state["after"], state.get("upto"), int(state.get("lastId", 0)))


_BATCH_SQL = """
SELECT id, table_name, op, "row"::text AS row, old::text AS old, at FROM {schema}.triggerhub_changes
WHERE table_name = $1 AND op = ANY($2::text[]) AND id > $5
  AND txid >= pg_snapshot_xmin($3::text::pg_snapshot)
  AND NOT pg_visible_in_snapshot(txid, $3::text::pg_snapshot) AND pg_visible_in_snapshot(txid, $4::text::pg_snapshot)
ORDER BY id LIMIT $6"""


SourceT = TypeVar("SourceT")
PositionT = TypeVar("PositionT")


@dataclass(slots=True)
class PgSession(Generic[SourceT, PositionT]):
    """A PostgreSQL change feed's open connection, what the feed follows on it, and where the feed
    stands: here a LISTENing connection, its outbox subscription and outbox position; in
    pg_logical.py a connection holding the slot's advisory lock, the source and the commit LSN."""

    conn: asyncpg.Connection
    source: SourceT
    position: PositionT

    async def close(self, *, lost: bool) -> None:
        """Politely when healthy; a `lost` connection, or one left in the middle of a query by a
        cancelled task, is terminated, since a polite close could hang on it or is refused (what it
        held, a LISTEN or an advisory lock, goes with it)."""
        import asyncpg

        if not lost:
            try:
                await self.conn.close()
                return
            except asyncpg.InternalClientError:  # a task cancelled mid-query: no polite close is left
                pass
        self.conn.terminate()


_Session = PgSession[Subscription, Position]


class PostgresFeed:
    def __init__(self, config: PostgresConfig, *, trigger: str, clock: Clock, tasks: asyncio.TaskGroup,
                 load_cursor: CursorLoader, poll_s: float = POLL_S,
                 on_failed: Callable[[str], None] = ignore_failure) -> None:
        self._config = config
        self._run = FeedTask("postgres", trigger=trigger, tasks=tasks, clock=clock, on_failed=on_failed, logger=log)
        self._load_cursor = load_cursor
        self._poll_s = poll_s
        self._changed = asyncio.Event()
        self._schema = "public"  # the outbox's schema: the connection's current_schema()
        self._source = f"postgresql://{config.location}"
        # Two triggers on one table read the same outbox rows: their event ids must differ.
        self._id_prefix = "pg:" + hashlib.sha256(f"{config.location}\0{trigger}".encode()).hexdigest()[:12]

    async def start(self, emit: CursorEmit) -> None:
        if self._run.running:
            return
        conn, subscription = await self._open()
        session = _Session(conn, subscription, Position.load(await self._load_cursor(CURSOR_KEY), subscription))
        await self._run.start(self._run.follow(session, reopen=self._reopen, step=lambda s: self._step(s, emit),
                                               lost=source_errors(), where=self._config.location, retry_s=RETRY_S))
        log.info("%s reading changes of %s in %s", self._run.label, subscription.table, self._config.location)

    async def stop(self) -> None:
        if await self._run.stop():
            log.info("%s stopped", self._run.label)

    async def _open(self) -> tuple[asyncpg.Connection, Subscription]:
        """Connect, LISTEN (before reading, so no notification falls between a read and the wait)
        and install the change trigger."""
        conn = await connect(self._config)
        async with closed_on_failure(conn.close, errors=source_errors(),
                                     failure=f"PostgreSQL at {self._config.location}: could not install the "
                                             f"change trigger on '{self._config.table}'"):
            await conn.add_listener(CHANNEL, lambda *_: self._changed.set())
            conn.add_termination_listener(lambda _c: self._changed.set())  # wakes the loop to reconnect
            self._schema = await conn.fetchval("SELECT quote_ident(current_schema())")
            return conn, await install(conn, self._config, self._run.trigger)

    async def _reopen(self) -> _Session:
        conn, subscription = await self._open()
        stored = await self._run.store("reading its cursor", lambda: self._load_cursor(CURSOR_KEY))
        return _Session(conn, subscription, Position.load(stored, subscription))

    async def _step(self, session: _Session, emit: CursorEmit) -> None:
        """Emit what was committed since the last step, prune the outbox, wait for a change."""
        self._changed.clear()
        drained = await self._drain(session, emit)
        if drained.after != session.position.after or session.position.upto is not None:
            await self._prune(session.conn, session.source, drained)
        session.position = drained
        await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        async with asyncio.TaskGroup() as tg:
            waits = [tg.create_task(self._changed.wait()),
                     tg.create_task(self._run.clock.sleep(self._poll_s))]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()

    async def _drain(self, session: _Session, emit: CursorEmit) -> Position:
        """Finish the batch left open by a restart, if any, then emit every change committed
        before this call: the batch up to a snapshot taken now."""
        conn, subscription, position = session.conn, session.source, session.position
        query = _BATCH_SQL.format(schema=self._schema)
        while True:
            fresh = position.upto is None
            if fresh:
                position = replace(position, upto=await conn.fetchval("SELECT pg_current_snapshot()::text"))
            while True:
                rows = await conn.fetch(query, subscription.table, list(self._config.operations), position.after,
                                        position.upto, position.last_id, BATCH_ROWS)
                for row in rows:
                    position = replace(position, last_id=row["id"])
                    event, cursor = self._event(row), (CURSOR_KEY, position.to_json())
                    await self._run.store(f"storing change {event.id}", lambda: emit(event, cursor=cursor))
                if len(rows) < BATCH_ROWS:
                    break
            position = Position(position.subscription, str(position.upto))
            if fresh:
                return position

    async def _prune(self, conn: asyncpg.Connection, subscription: Subscription, position: Position) -> None:
        """Record that the hub stored every change visible in `position.after`, then delete the
        outbox rows of the table that every subscriber of it has delivered (a row visible in a
        subscriber's delivered snapshot, or in its `since`, is done for that subscriber)."""
        async with conn.transaction():
            await conn.execute(f"UPDATE {self._schema}.triggerhub_subscriptions SET delivered = $1 WHERE id = $2",
                               position.after, subscription.id)
            await conn.execute(
                f"""DELETE FROM {self._schema}.triggerhub_changes c WHERE c.table_name = $1 AND NOT EXISTS (
                    SELECT 1 FROM {self._schema}.triggerhub_subscriptions s WHERE s.table_name = c.table_name
                    AND NOT pg_visible_in_snapshot(c.txid, COALESCE(s.delivered, s.since)::pg_snapshot))""",
                subscription.table)

    def _event(self, row: Any) -> TriggerEvent:
        at: datetime = row["at"]
        data: dict[str, JSON] = {
            "table": row["table_name"], "op": row["op"], "row": self._columns(row["row"]),
            "old": self._columns(row["old"]), "id": row["id"],
            "at": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }
        return TriggerEvent(id=f"{self._id_prefix}:{row['table_name']}:{row['id']}", source=self._source,
                            type=EVENT_TYPE, trigger=self._run.fqn, subject=row["table_name"],
                            time_ms=int(at.timestamp() * 1000), data=data)

    def _columns(self, text: str | None) -> JSON:
        if text is None:
            return None
        values: dict[str, JSON] = json.loads(text)
        if self._config.columns is None:
            return values
        return {c: values[c] for c in self._config.columns if c in values}


# --------------------------------------------------------------------------- the feed kind


def _parse(params: Mapping[str, JSON], _ctx: ParseContext) -> dict[str, JSON]:
    return parse_postgres_config(params).to_json(redact=False)


def _build(config: Mapping[str, JSON], ctx: FeedContext) -> PostgresFeed:
    return PostgresFeed(parse_postgres_config(config), trigger=ctx.trigger, clock=ctx.clock, tasks=ctx.tasks,
                        load_cursor=ctx.load_cursor, on_failed=ctx.on_failed)


FEED_KIND = FeedKind(
    catalogue=BuiltinFeed("postgres", "changes", "Fire a trigger for every committed INSERT, UPDATE or DELETE "
                          "of a PostgreSQL table", ("dsn", "table", "operations", "columns")),
    parse=_parse, build=_build, masks={"dsn": redact_dsn},
    uninstall=uninstall_or_warn(parse_postgres_config, uninstall, lambda config: (
        f"its PostgreSQL trigger stays on {config.table}; drop it with "
        f"DROP TRIGGER triggerhub_changes ON {config.table}")),
)
