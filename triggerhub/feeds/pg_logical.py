"""PostgreSQL change feed, logical mode: a replication slot per trigger, decoded by wal2json.

`mode: logical` of /whisk.system/postgres/changes. The feed owns one logical replication slot
(`triggerhub_<trigger>_<hash>`, or the `slot` parameter) and reads it through SQL:
`pg_logical_slot_peek_changes` returns whole committed transactions in commit order without
consuming them; the feed stores their events (the cursor, commit LSN and position in the
transaction, in the same store transaction) and only then confirms with
`pg_replication_slot_advance`. A crash between the two re-reads transactions the cursor skips,
so a restart loses nothing and fires nothing twice. When idle, the slot is still advanced to the
server's flushed WAL every heartbeat, so it never holds WAL back for changes of other tables.

Event data: {table, op, key, row, old, lsn, xid, at, seq}: `key` the primary key, `row` the new
row (null for DELETE), `old` the row before (whole with REPLICA IDENTITY FULL, else the key
columns, or null), `lsn`/`at` the commit's LSN and time, `seq` the change's place in it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from triggerhub.clock import Clock
from triggerhub.errors import BadRequest, FeedError
from triggerhub.feeds.cursor import CursorEmit, CursorLoader, CursorSaver
from triggerhub.feeds.kind import BuiltinFeed, FeedContext, FeedKind, ParseContext, parse_operations, uninstall_or_warn
from triggerhub.feeds.lifecycle import FeedTask, closed_on_failure, ignore_failure
from triggerhub.feeds.pg_slots import (
    CONNECT_TIMEOUT_S, PLUGIN, SLOT_PREFIX, ServerFacts, Source, drop_slot, lock_key, lsn_int,
    lsn_text, orphaned_slots, resolve_source, server_problem, slot_in_use, visible_in_snapshot,
)
from triggerhub.feeds.postgres import OPERATIONS, PgSession, connect_errors, parse_dsn, redact_dsn, source_errors
from triggerhub.model import JSON, TriggerEvent

if TYPE_CHECKING:  # imported where a feed connects: a hub on SQLite never loads asyncpg
    import asyncpg

log = logging.getLogger(__name__)

MODE = "logical"
EVENT_TYPE = "triggerhub.feed.postgres.change"
CURSOR_KEY = "logical"
POLL_MS = 100  # no notification comes from a slot: it is peeked this often while idle
HEARTBEAT_MS = 10_000
RETRY_S = 1.0
BATCH_ROWS = 5_000  # rows per peek; a peek always ends on a whole transaction
SNAPSHOT_OP = "SNAPSHOT"
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TABLE_RE = re.compile(rf"^(?:{_IDENT}\.)?(?:{_IDENT}|\*)$")
_SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")
_JSON_TYPES = ("json", "jsonb")


def slot_name_for(trigger: str) -> str:
    """The default slot of a trigger: readable, unique per trigger, a valid slot name."""
    readable = re.sub(r"[^a-z0-9]+", "_", trigger.lower()).strip("_")[:32]
    return f"{SLOT_PREFIX}{readable}_{hashlib.sha256(trigger.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogicalConfig:
    dsn: str
    table: str  # as written: orders, public.orders, public.* (every table of the schema)
    operations: tuple[str, ...] = OPERATIONS
    slot: str
    snapshot: bool = False  # emit the table's existing rows (op SNAPSHOT) before streaming
    heartbeat_ms: int = HEARTBEAT_MS
    poll_ms: int = POLL_MS

    @property
    def location(self) -> str:
        """host:port/database: names the database without credentials."""
        parts = urlsplit(self.dsn)
        return f"{parts.hostname}:{parts.port or 5432}{parts.path}"

    def to_json(self) -> dict[str, JSON]:
        return {"dsn": self.dsn, "table": self.table, "operations": list(self.operations), "slot": self.slot,
                "snapshot": self.snapshot, "heartbeatMs": self.heartbeat_ms, "pollMs": self.poll_ms}


def parse_logical_config(params: Mapping[str, JSON], trigger: str) -> LogicalConfig:
    dsn = parse_dsn(params)
    table = params.get("table")
    if not isinstance(table, str) or not _TABLE_RE.match(table):
        raise BadRequest(f"table parameter '{table}' must name a table like orders or public.orders, "
                         "or every table of a schema like public.*")
    operations = parse_operations(params, OPERATIONS)
    slot = params.get("slot") or slot_name_for(trigger)
    if not isinstance(slot, str) or not _SLOT_RE.match(slot):
        raise BadRequest(f"slot parameter '{slot}' must be a replication slot name: 1 to 63 lower-case "
                         "letters, digits or underscores")
    snapshot = params.get("snapshot", False)
    if not isinstance(snapshot, bool):
        raise BadRequest(f"snapshot parameter '{snapshot}' must be true or false")
    if snapshot and table.endswith("*"):
        raise BadRequest(f"snapshot parameter true needs one table, not '{table}'; name the table")
    heartbeat_ms = _milliseconds(params, "heartbeatMs", HEARTBEAT_MS, 100, 3_600_000)
    poll_ms = _milliseconds(params, "pollMs", POLL_MS, 10, 60_000)
    return LogicalConfig(dsn=dsn, table=table, operations=operations, slot=slot, snapshot=snapshot,
                         heartbeat_ms=heartbeat_ms, poll_ms=poll_ms)


def _milliseconds(params: Mapping[str, JSON], key: str, default: int, low: int, high: int) -> int:
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{key} parameter '{value}' must be a whole number of milliseconds from {low} to {high}")
    return value


@dataclass(frozen=True, slots=True)
class Position:
    """The last change stored: its commit LSN and place in the transaction. Commit LSNs grow in
    commit order, so every change at or before the position is already stored."""

    lsn: int = 0
    seq: int = -1
    phase: str = "stream"  # "snapshot" while the existing rows are being emitted
    snap: str | None = None  # the snapshot those rows came from: its transactions are skipped
    snap_lsn: int = 0  # ... up to this commit LSN (every transaction it saw committed before)

    def done(self, lsn: int, seq: int) -> bool:
        return (lsn, seq) <= (self.lsn, self.seq)

    def to_json(self) -> str:
        return json.dumps({"lsn": lsn_text(self.lsn), "seq": self.seq, "phase": self.phase, "snap": self.snap,
                           "snapLsn": lsn_text(self.snap_lsn)})

    @staticmethod
    def load(stored: str | None) -> Position | None:
        if not stored:
            return None
        state = json.loads(stored)
        return Position(lsn_int(state["lsn"]), int(state["seq"]), state["phase"], state.get("snap"),
                        lsn_int(state.get("snapLsn", "0/0")))


# --------------------------------------------------------------------------- the feed


@dataclass(slots=True)
class _Transaction:
    xid: int
    lsn: int  # the commit record's LSN
    next_lsn: int  # just past it: confirming this LSN confirms the transaction
    at: str  # commit time as wal2json prints it
    changes: list[dict[str, Any]] = field(default_factory=list)


_Session = PgSession[Source, Position]  # the connection holds the slot's advisory lock


class LogicalFeed:
    """Streams one slot into the hub; see the module docstring for the delivery contract."""

    def __init__(self, config: LogicalConfig, *, trigger: str, clock: Clock, tasks: asyncio.TaskGroup,
                 load_cursor: CursorLoader, save_cursor: CursorSaver,
                 on_failed: Callable[[str], None] = ignore_failure) -> None:
        self._config = config
        self._run = FeedTask("postgres", trigger=trigger, tasks=tasks, clock=clock, on_failed=on_failed, logger=log)
        self._load_cursor = load_cursor
        self._save_cursor = save_cursor
        self._poll_s = config.poll_ms / 1000
        self._source_url = f"postgresql://{config.location}"
        self._id_prefix = "pgl:" + hashlib.sha256(f"{config.location}\0{trigger}".encode()).hexdigest()[:12]
        self._gauges: dict[str, int] = {}
        self._confirmed = 0  # the slot's confirmed_flush_lsn as last seen
        self._heartbeat_due_s = 0.0

    def gauges(self) -> dict[str, int]:
        return dict(self._gauges)

    async def start(self, emit: CursorEmit) -> None:
        if self._run.running:
            return
        session = await self._open(emit)
        await self._run.start(self._run.follow(session, reopen=lambda: self._open(emit),
                                               step=lambda s: self._step(s, emit), lost=source_errors(),
                                               where=self._config.location, retry_s=RETRY_S))
        log.info("%s streaming %s in %s from slot %s", self._run.label, session.source.filter,
                 self._config.location, self._config.slot)

    async def stop(self) -> None:
        if await self._run.stop():
            log.info("%s stopped", self._run.label)

    # ----------------------------------------------------------------------- opening

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg

        try:
            return await asyncpg.connect(self._config.dsn, timeout=CONNECT_TIMEOUT_S,
                                         server_settings={"application_name": f"triggerhub {self._run.trigger}"[:63]})
        except connect_errors() as exc:
            raise FeedError(f"PostgreSQL at {self._config.location} refused or did not answer: {exc}; "
                            "check the dsn parameter and that the server runs") from exc

    async def _open(self, emit: CursorEmit) -> _Session:
        """Connect, check the server, own the slot (creating it, and taking the snapshot, the
        first time), and read the cursor. Raises FeedError saying what to do."""
        conn = await self._connect()
        async with closed_on_failure(conn.close, errors=source_errors(),
                                     failure=f"PostgreSQL at {self._config.location}: could not open replication "
                                             f"slot '{self._config.slot}'"):
            source, position = await self._prepare(conn, emit)
            return _Session(conn, source, position)

    async def _prepare(self, conn: asyncpg.Connection, emit: CursorEmit) -> tuple[Source, Position]:
        config = self._config
        row = await conn.fetchrow("SELECT current_setting('wal_level') AS wal_level, current_user AS role, "
                                  "rolreplication OR rolsuper AS can FROM pg_roles WHERE rolname = current_user")
        problem = server_problem(ServerFacts(wal_level=row["wal_level"], role=row["role"],
                                             can_replicate=row["can"]), config.location)
        if problem:
            raise FeedError(problem)
        source = await resolve_source(conn, config.table, config.location)
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(config.slot)):
            raise await slot_in_use(conn, config.slot, config.location)
        slot = await conn.fetchrow("SELECT plugin, database, active_pid, confirmed_flush_lsn::text AS confirmed "
                                   "FROM pg_replication_slots WHERE slot_name = $1", config.slot)
        position = Position.load(await self._run.store("reading its cursor", lambda: self._load_cursor(CURSOR_KEY)))
        if slot is not None and slot["active_pid"] is not None:
            raise await slot_in_use(conn, config.slot, config.location)
        database = await conn.fetchval("SELECT current_database()")
        if slot is not None and (slot["plugin"] != PLUGIN or slot["database"] != database):
            raise FeedError(f"replication slot '{config.slot}' in {config.location} belongs to database "
                            f"'{slot['database']}' with plugin '{slot['plugin']}', not this feed; give this feed "
                            "another slot name with the slot parameter")
        if slot is None:
            position = await self._create_slot(conn, position)
        else:
            self._confirmed = lsn_int(slot["confirmed"])
            position = position or Position()
        if position.phase == "snapshot":
            position = await self._snapshot(conn, source, position, emit)
        return source, position

    async def _create_slot(self, conn: asyncpg.Connection, stale: Position | None) -> Position:
        import asyncpg

        if stale is not None and stale.phase == "stream" and stale.lsn:
            log.warning("%s: replication slot %s was gone, so changes after LSN %s were not captured; the slot "
                        "is created again", self._run.label, self._config.slot, lsn_text(stale.lsn))
        fresh = Position(phase="snapshot" if self._config.snapshot else "stream")
        # Written before the slot exists: a crash in between still takes the snapshot after a restart.
        await self._run.store("resetting its cursor", lambda: self._save_cursor(CURSOR_KEY, fresh.to_json()))
        try:
            created = await conn.fetchval("SELECT lsn::text FROM pg_create_logical_replication_slot($1, $2)",
                                          self._config.slot, PLUGIN)
        except asyncpg.UndefinedFileError as exc:
            raise FeedError(f"PostgreSQL at {self._config.location} has no {PLUGIN} output plugin; install it on "
                            "the server (Debian: apt-get install postgresql-<major>-wal2json), or use mode "
                            "outbox") from exc
        self._confirmed = lsn_int(created)
        log.info("%s created replication slot %s at %s", self._run.label, self._config.slot, created)
        return fresh

    async def _snapshot(self, conn: asyncpg.Connection, source: Source, position: Position,
                        emit: CursorEmit) -> Position:
        """Emit every existing row (op SNAPSHOT), then stream. Transactions the snapshot saw are
        skipped in the stream; a restart during the snapshot reads it again, and rows already
        stored keep their ids (one per key), so none is stored twice."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snap = position.snap or await conn.fetchval("SELECT pg_current_snapshot()::text")
            snap_lsn = position.snap_lsn or lsn_int(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))
            keys = await self._primary_key(conn, source)
            during = Position(phase="snapshot", snap=snap, snap_lsn=snap_lsn)
            count = 0
            async for record in conn.cursor(f"SELECT to_jsonb(t)::text AS row FROM {source.quoted} t"):
                row = json.loads(record["row"])
                key = {k: row.get(k) for k in keys} if keys else None
                ident = hashlib.sha256(json.dumps(key if key else row, sort_keys=True).encode()).hexdigest()[:24]
                event = self._event(f"snapshot:{ident}", table=f"{source.schema}.{source.table}", op=SNAPSHOT_OP,
                                    key=key, row=row, old=None, lsn=None, xid=None, at=None, seq=count)
                await self._store(event, during, emit)
                count += 1
        done = Position(phase="stream", snap=snap, snap_lsn=snap_lsn)
        await self._run.store("ending the snapshot", lambda: self._save_cursor(CURSOR_KEY, done.to_json()))
        log.info("%s emitted %d existing rows of %s.%s", self._run.label, count, source.schema, source.table)
        return done

    async def _primary_key(self, conn: asyncpg.Connection, source: Source) -> list[str]:
        return [r["attname"] for r in await conn.fetch(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY a.attnum",
            source.quoted)]

    # ----------------------------------------------------------------------- streaming

    async def _step(self, session: _Session, emit: CursorEmit) -> None:
        before = session.position
        session.position, more = await self._pass(session.conn, session.source, session.position, emit)
        if not more and session.position == before:  # nothing new: wait; else look again at once
            await self._run.clock.sleep(self._poll_s)

    async def _pass(self, conn: asyncpg.Connection, source: Source, position: Position,
                    emit: CursorEmit) -> tuple[Position, bool]:
        """Store every change committed before the server's flushed WAL position (at most
        BATCH_ROWS rows of it), then confirm; returns the new position and whether rows remain."""
        flushed = lsn_int(await conn.fetchval("SELECT pg_current_wal_flush_lsn()::text"))
        rows = await conn.fetch(
            "SELECT data FROM pg_logical_slot_peek_changes($1, $2::text::pg_lsn, $3, 'format-version', '2', "
            "'include-xids', '1', 'include-timestamp', '1', 'include-lsn', '1', 'include-pk', '1', "
            "'add-tables', $4, 'actions', $5)",
            self._config.slot, lsn_text(flushed), BATCH_ROWS, source.filter,
            ",".join(op.lower() for op in self._config.operations))
        confirm = 0
        current: _Transaction | None = None
        for row in rows:
            change = json.loads(row["data"])
            action = change["action"]
            if action == "B":
                current = _Transaction(change["xid"], lsn_int(change["lsn"]), lsn_int(change["nextlsn"]),
                                       change["timestamp"])
            elif action == "C" and current is not None:
                position = await self._commit(current, position, emit)
                confirm, current = current.next_lsn, None
            elif current is not None and action in ("I", "U", "D"):
                current.changes.append(change)
        more = len(rows) >= BATCH_ROWS
        if not more:  # every commit before `flushed` is decoded: confirming it is safe
            confirm = max(confirm, flushed)
        now_s = self._run.clock.monotonic_s()
        if confirm > self._confirmed and (rows or now_s >= self._heartbeat_due_s):
            await conn.execute("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)", self._config.slot,
                               lsn_text(confirm))
            self._confirmed = confirm
            self._heartbeat_due_s = now_s + self._config.heartbeat_ms / 1000
            await self._measure(conn)
        elif not self._gauges:
            await self._measure(conn)
        return position, more

    async def _commit(self, txn: _Transaction, position: Position, emit: CursorEmit) -> Position:
        """Store the changes of one transaction the cursor has not passed yet."""
        if position.snap is not None and txn.lsn < position.snap_lsn and visible_in_snapshot(txn.xid, position.snap):
            return position  # its rows were in the snapshot
        for seq, change in enumerate(txn.changes):
            if position.done(txn.lsn, seq):
                continue
            event = self._change_event(change, txn, seq)
            position = Position(txn.lsn, seq, "stream", position.snap, position.snap_lsn)
            await self._store(event, position, emit)
        return position

    async def _measure(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained "
            "FROM pg_replication_slots WHERE slot_name = $1", self._config.slot)
        if row is not None:
            self._gauges = {"slotLagBytes": max(0, row["lag"]), "slotRetainedBytes": max(0, row["retained"]),
                            "confirmedLsn": self._confirmed}

    async def _store(self, event: TriggerEvent, position: Position, emit: CursorEmit) -> None:
        """Store one change with the position (nothing is confirmed to PostgreSQL before that)."""
        cursor = (CURSOR_KEY, position.to_json())
        await self._run.store(f"storing change {event.id}", lambda: emit(event, cursor=cursor))

    def _change_event(self, change: Mapping[str, Any], txn: _Transaction, seq: int) -> TriggerEvent:
        new = _values(change.get("columns"))
        identity = _values(change.get("identity"))
        pk = [c["name"] for c in change.get("pk", ())]
        op = {"I": "INSERT", "U": "UPDATE", "D": "DELETE"}[change["action"]]
        keyed = new if new is not None else identity
        key = {k: keyed.get(k) for k in pk} if pk and keyed is not None else None
        return self._event(f"{lsn_text(txn.lsn)}:{seq}", table=f"{change['schema']}.{change['table']}", op=op,
                           key=key, row=new, old=identity, lsn=lsn_text(txn.lsn), xid=txn.xid, at=txn.at, seq=seq)

    def _event(self, suffix: str, *, table: str, op: str, key: JSON, row: JSON, old: JSON, lsn: str | None,
               xid: int | None, at: str | None, seq: int) -> TriggerEvent:
        when = datetime.fromisoformat(at) if at is not None else None
        stamp = self._run.clock.now_ms() if when is None else int(when.timestamp() * 1000)
        data: dict[str, JSON] = {
            "table": table, "op": op, "key": key, "row": row, "old": old, "lsn": lsn, "xid": xid,
            "at": when.isoformat(timespec="microseconds").replace("+00:00", "Z") if when else None, "seq": seq,
        }
        return TriggerEvent(id=f"{self._id_prefix}:{suffix}", source=self._source_url, type=EVENT_TYPE,
                            trigger=self._run.fqn, subject=table, time_ms=stamp, data=data)


def _values(columns: Sequence[Mapping[str, Any]] | None) -> dict[str, JSON] | None:
    """wal2json's [{name, type, value}] as a row; json and jsonb values are parsed."""
    if columns is None:
        return None
    return {c["name"]: json.loads(c["value"]) if c["type"] in _JSON_TYPES and isinstance(c["value"], str)
            else c["value"] for c in columns}


async def _drop(config: LogicalConfig, trigger: str) -> None:
    if await drop_slot(config.dsn, config.slot, config.location):
        log.info("postgres feed %s dropped replication slot %s", trigger, config.slot)


async def _audit(configs: Sequence[Mapping[str, JSON]]) -> None:
    """At hub start: report, per database some logical feed reads, our slots no feed owns."""
    by_database: dict[str, tuple[str, set[str]]] = {}
    for stored in configs:
        dsn, slot = stored.get("dsn"), stored.get("slot")
        if isinstance(dsn, str) and isinstance(slot, str):
            location = LogicalConfig(dsn=dsn, table="*", slot=slot).location
            by_database.setdefault(location, (dsn, set()))[1].add(slot)
    if not by_database:
        return
    audit_errors: tuple[type[Exception], ...] = (*connect_errors(), ValueError)  # a bad stored dsn, too
    for location, (dsn, known) in by_database.items():
        try:
            orphans = await orphaned_slots(dsn, known)
        except audit_errors as exc:
            log.warning("could not look for orphaned replication slots in %s: %s", location, exc)
            continue
        for slot, retained in orphans:
            log.warning("replication slot %s in %s belongs to no feed of this hub and holds %d bytes of WAL; if no "
                        "other hub uses it, drop it with SELECT pg_drop_replication_slot('%s')", slot, location,
                        retained, slot)


# --------------------------------------------------------------------------- removing, auditing, the feed kind


def _parse(params: Mapping[str, JSON], ctx: ParseContext) -> dict[str, JSON]:
    return parse_logical_config(params, ctx.trigger).to_json()


def _build(config: Mapping[str, JSON], ctx: FeedContext) -> LogicalFeed:
    return LogicalFeed(parse_logical_config(config, ctx.trigger), trigger=ctx.trigger, clock=ctx.clock,
                       tasks=ctx.tasks, load_cursor=ctx.load_cursor, save_cursor=ctx.save_cursor,
                       on_failed=ctx.on_failed)


FEED_KIND = FeedKind(
    catalogue=BuiltinFeed("postgres", "changes", "Fire a trigger for every committed INSERT, UPDATE or DELETE "
                          "of a PostgreSQL table", ("dsn", "table", "operations", "slot", "snapshot", "heartbeatMs",
                                                             "pollMs")),
    parse=_parse, build=_build, masks={"dsn": redact_dsn}, audit=_audit,
    # The slot is dropped at DELETE; one the server could not drop then is named here, and again
    # at every hub start (`_audit`), because it holds WAL back until someone drops it.
    uninstall=uninstall_or_warn(lambda stored: parse_logical_config(stored, "/_/_"), _drop, lambda config: (
        f"its replication slot {config.slot} stays in {config.location} and holds WAL back; drop it with "
        f"SELECT pg_drop_replication_slot('{config.slot}')")),
)
