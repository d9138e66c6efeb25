"""Versioned schema migrations, identical SQL for SQLite and PostgreSQL.

Steps are numbered and applied in order inside `SqlStore.open()`; each applied step is one row of
`schema_version`. A step is never edited once released: change the schema by appending a step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triggerhub.errors import StoreError
from triggerhub.model import now_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables", (
        """CREATE TABLE subjects (
            uuid TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            namespace TEXT NOT NULL,
            doc TEXT NOT NULL)""",
        # (path, name) is the key: names are unique per entity path across collections.
        """CREATE TABLE entities (
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            collection TEXT NOT NULL,
            namespace TEXT NOT NULL,
            package TEXT NOT NULL,
            revision BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL,
            doc TEXT NOT NULL,
            PRIMARY KEY (path, name))""",
        "CREATE INDEX entities_listing ON entities (namespace, collection, updated_ms)",
        """CREATE TABLE activations (
            activation_id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            start_ms BIGINT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX activations_by_start ON activations (namespace, start_ms, activation_id)",
        "CREATE INDEX activations_by_name ON activations (namespace, name, start_ms, activation_id)",
        """CREATE TABLE pending (
            activation_id TEXT PRIMARY KEY,
            accepted_ms BIGINT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX pending_by_accepted ON pending (accepted_ms, activation_id)",
        """CREATE TABLE events (
            id TEXT PRIMARY KEY,
            trigger_fqn TEXT NOT NULL,
            time_ms BIGINT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX events_by_trigger ON events (trigger_fqn, time_ms)",
        """CREATE TABLE feeds (
            trigger_fqn TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            doc TEXT NOT NULL)""",
        """CREATE TABLE cursors (
            feed_id TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_ms BIGINT NOT NULL)""",
    )),
    Migration(2, "API gateway routes", (
        # one row per (namespace, base path, relative path, verb); doc is ApiRoute.to_json()
        """CREATE TABLE api_routes (
            namespace TEXT NOT NULL,
            base_path TEXT NOT NULL,
            rel_path TEXT NOT NULL,
            verb TEXT NOT NULL,
            doc TEXT NOT NULL,
            PRIMARY KEY (namespace, base_path, rel_path, verb))""",
    )),
    # Per rule with a filter: events it took and events it filtered out, counted in the same
    # transaction that accepts each event (so exactly once, in every process that matches).
    Migration(3, "rule routing counts", (
        """CREATE TABLE rule_counts (
            rule TEXT PRIMARY KEY,
            matched BIGINT NOT NULL,
            filtered BIGINT NOT NULL)""",
    )),
    # Issue 14. A waiting retry is a row due at `due_ms`; a process claims it by setting a lease
    # (`lease_owner` until `lease_until_ms`), so two processes never start it twice and a process
    # killed holding one leaves it to others when the lease ends. `doc` is the next attempt's
    # invocation. A dead letter is one row per (rule, event), replaced when a redrive fails again.
    Migration(4, "retries and dead letters", (
        """CREATE TABLE retries (
            activation_id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            due_ms BIGINT NOT NULL,
            lease_owner TEXT NOT NULL,
            lease_until_ms BIGINT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX retries_by_due ON retries (due_ms, activation_id)",
        """CREATE TABLE dead_letters (
            id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX dead_letters_by_rule ON dead_letters (rule, created_ms, id)",
    )),
    # Replay marks (store/replays.py): one row per (rule, event) replayed, claimed in the
    # transaction that accepts the replayed invocation; pruned with the events by event time.
    # The events index serves retention's age and total bounds (store/event_log.py).
    Migration(5, "event retention and replay marks", (
        """CREATE TABLE replays (
            rule TEXT NOT NULL,
            event_id TEXT NOT NULL,
            event_ms BIGINT NOT NULL,
            runs BIGINT NOT NULL,
            activation_id TEXT NOT NULL,
            replayed_ms BIGINT NOT NULL,
            PRIMARY KEY (rule, event_id))""",
        "CREATE INDEX replays_by_event_time ON replays (event_ms)",
        "CREATE INDEX events_by_time ON events (time_ms, id)",
    )),
    # Derived triggers (issue 14): keyed correlation state with the time each key is next due
    # (absence deadlines, cleanup), and the outbox of derived events waiting to be accepted on
    # their derived trigger. Both change in the transaction that accepts the event causing it.
    Migration(6, "derived trigger state", (
        """CREATE TABLE derive_state (
            trigger_fqn TEXT NOT NULL,
            key TEXT NOT NULL,
            state TEXT NOT NULL,
            due_ms BIGINT,
            PRIMARY KEY (trigger_fqn, key))""",
        "CREATE INDEX derive_state_by_due ON derive_state (due_ms)",
        """CREATE TABLE derive_outbox (
            event_id TEXT PRIMARY KEY,
            trigger_fqn TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX derive_outbox_by_created ON derive_outbox (created_ms, event_id)",
    )),
    # Lineage: the trigger event a record is filed under when lineage cannot find it by key (the
    # `event` of a delivery attempt, annotated `attempt`, or an `eventId`; NULL otherwise, so the
    # index stays append-only). Written by the same insert as the record.
    Migration(8, "activations by trigger event", (
        "ALTER TABLE activations ADD COLUMN event_id TEXT",
        "CREATE INDEX activations_by_event ON activations (event_id, start_ms)",
    )),
    # One counter bumped in every transaction that writes entities: a distributed worker reads it
    # once per batch of events and drops its entity cache when it moved (engine/entities.py).
    Migration(10, "entity generation", (
        "CREATE TABLE entity_generation (id INTEGER PRIMARY KEY, generation BIGINT NOT NULL)",
        "INSERT INTO entity_generation (id, generation) VALUES (1, 0)",
    )),
    # Distributed mode: which `feeds` process runs each feed (a lease it renews, expiring at a
    # time of the database's clock), the live feeds processes, and feed counters summed over
    # every process that counted (feeds processes and the controllers taking webhooks).
    Migration(11, "feed leases and shared feed counters", (
        """CREATE TABLE feed_leases (
            trigger_fqn TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_ms BIGINT NOT NULL)""",
        """CREATE TABLE feed_processes (
            owner TEXT PRIMARY KEY,
            expires_ms BIGINT NOT NULL)""",
        """CREATE TABLE feed_counts (
            trigger_fqn TEXT PRIMARY KEY,
            received BIGINT NOT NULL,
            fired BIGINT NOT NULL,
            rejected BIGINT NOT NULL)""",
    )),
    # Issue 14: the redrive under way of a dead letter (the activation id of its run), set in the
    # transaction that accepts that run only while it is NULL, so two redrives never run one
    # letter twice; cleared when the run gives up again (the letter is replaced), gone with the
    # letter when it succeeds.
    Migration(13, "dead letters being redriven", (
        "ALTER TABLE dead_letters ADD COLUMN redriven_by TEXT",
    )),
)

LATEST_VERSION = MIGRATIONS[-1].version

_CREATE_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_ms BIGINT NOT NULL)"""


async def migrate(engine: AsyncEngine, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the steps not yet recorded in `schema_version`; return the versions applied now.

    Safe against a second process migrating at the same time: each step first inserts its
    `schema_version` row, so the loser of a race fails on the primary key and skips the step.
    """
    await _create_version_table(engine)
    async with engine.connect() as conn:
        applied = set((await conn.execute(text("SELECT version FROM schema_version"))).scalars())
    known = max((m.version for m in migrations), default=0)
    if applied and max(applied) > known:
        raise StoreError(f"database schema version {max(applied)} is newer than this triggerhub knows "
                         f"(up to {known}); upgrade triggerhub or point it at another database")
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version not in applied and await _apply(engine, migration):
            done.append(migration.version)
    return done


async def _create_version_table(engine: AsyncEngine) -> None:
    # Two PostgreSQL sessions racing on CREATE TABLE IF NOT EXISTS can both miss the table and
    # one then fails on the catalog's unique index; the table exists afterwards either way.
    try:
        async with engine.begin() as conn:
            await conn.execute(text(_CREATE_VERSION_TABLE))
    except (IntegrityError, ProgrammingError):
        async with engine.begin() as conn:
            await conn.execute(text(_CREATE_VERSION_TABLE))


async def _apply(engine: AsyncEngine, migration: Migration) -> bool:
    try:
        async with engine.begin() as conn:
            await _record(conn, migration)
            for statement in migration.statements:
                await conn.execute(text(statement))
    except IntegrityError:
        log.info("schema migration %d (%s) was applied by another process", migration.version, migration.name)
        return False
    log.info("applied schema migration %d (%s)", migration.version, migration.name)
    return True


async def _record(conn: AsyncConnection, migration: Migration) -> None:
    # The insert comes first: on SQLite it opens the transaction the DDL then joins.
    await conn.execute(text("INSERT INTO schema_version (version, name, applied_ms) VALUES (:v, :n, :t)"),
                       {"v": migration.version, "n": migration.name, "t": now_ms()})
