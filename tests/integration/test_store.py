"""SqlStore against real databases: a SQLite file and PostgreSQL, each test on an empty one."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.plugins.store import as_store, sqlite_url
from tests.plugins.waiting import wait_until
from triggerhub.errors import ConfigError, RevisionConflict, StoreError
from triggerhub.model import (
    Action, Activation, ActivationResponse, ApiRoute, Binding, Collection, Exec, FullyQualifiedName, Invocation,
    Package, Parameter, ReducedRule, ResponseType, Rule, RuleCounts, RuleStatus, Subject, Trigger, TriggerEvent,
)
from triggerhub.store.base import Acceptance, ActivationQuery, FeedRegistration
from triggerhub.store.migrations import LATEST_VERSION, MIGRATIONS, migrate
from triggerhub.store.runners import CHECKPOINT_EVERY_WRITES, WAL_LIMIT_BYTES, WriterStatistics
from triggerhub.store.sql import SqlStore

T0_MS = 1_700_000_000_000
SENSOR = FullyQualifiedName("guest", "sensor")


def action(name: str, path: str = "guest", updated_ms: int = T0_MS, revision: int = 0) -> Action:
    return Action(path, name, Exec("python:3.11", "def main(a):\n    return a\n"), updated_ms=updated_ms,
                  revision=revision)


def activation(activation_id: str, start_ms: int = T0_MS, *, name: str = "hello", path: str | None = None,
               namespace: str = "guest", result: str = "first") -> Activation:
    annotations = (Parameter("path", path),) if path else ()
    return Activation(namespace, name, "guest", activation_id, start_ms, start_ms + 5,
                      ActivationResponse.ok({"r": result}), annotations=annotations)


def invocation(activation_id: str, accepted_ms: int = T0_MS) -> Invocation:
    return Invocation(activation_id, action("hello"), {"temperature": 21}, "guest", "guest", accepted_ms,
                      path_annotation="guest/hello")


def trigger_event(event_id: str, trigger: FullyQualifiedName = SENSOR) -> TriggerEvent:
    return TriggerEvent(event_id, "mqtt://sensors", "triggerhub.mqtt", trigger, {"t": 21}, time_ms=T0_MS)


def aid(n: int) -> str:
    return f"{n:032x}"


# --------------------------------------------------------------------------- migrations


async def test_open_applies_every_migration_once_and_a_second_open_applies_nothing(store_url: str) -> None:
    first = SqlStore(store_url)
    await first.open()
    await first.close()
    engine = create_async_engine(store_url)
    try:
        assert await migrate(engine) == []
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version, name FROM schema_version ORDER BY version"))).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    again = SqlStore(store_url)
    await again.open()
    await again.close()


async def test_migrate_on_an_empty_database_reports_the_versions_it_applied(store_url: str) -> None:
    engine = create_async_engine(store_url)
    try:
        assert await migrate(engine) == [m.version for m in MIGRATIONS]
        assert await migrate(engine) == []
    finally:
        await engine.dispose()


async def test_a_database_from_a_newer_triggerhub_is_refused(store: SqlStore, store_url: str) -> None:
    engine = create_async_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO schema_version (version, name, applied_ms) VALUES (999, 'x', 0)"))
    finally:
        await engine.dispose()
    newer = SqlStore(store_url)
    with pytest.raises(StoreError, match=f"database schema version 999 is newer than this triggerhub knows "
                                         f"\\(up to {LATEST_VERSION}\\)"):
        await newer.open()


# --------------------------------------------------------------------------- subjects, feeds, cursors


async def test_subjects_are_stored_replaced_and_listed_by_name(store: SqlStore) -> None:
    bob = Subject("bob", "bob", "uuid-b", "hash-b")
    alice = Subject("alice", "alice", "uuid-a", "hash-a", {"invocationsPerMinute": 10})
    await store.put_subject(bob)
    await store.put_subject(alice)
    renamed = replace(bob, key_hash="hash-b2")
    await store.put_subject(renamed)
    assert await store.get_subject("uuid-b") == renamed
    assert await store.get_subject("nope") is None
    assert await store.list_subjects() == [alice, renamed]


async def test_feed_registrations_are_upserted_listed_and_deleted(store: SqlStore) -> None:
    timer = FeedRegistration("/guest/timer", "/whisk.system/alarms/alarm", "guest", {"cron": "* * * * *"})
    other = FeedRegistration("/guest/a-hook", "/whisk.system/webhook", "guest")
    await store.put_feed(timer)
    await store.put_feed(other)
    paused = replace(timer, status="paused", reason="by user", updated_ms=2)
    await store.put_feed(paused)
    assert await store.get_feed("/guest/timer") == paused
    assert await store.list_feeds() == [other, paused]
    await store.delete_feed("/guest/timer")
    assert await store.get_feed("/guest/timer") is None
    assert await store.list_feeds() == [other]


async def test_cursor_is_overwritten(store: SqlStore) -> None:
    assert await store.get_cursor("alarm:/guest/timer") is None
    await store.set_cursor("alarm:/guest/timer", "100")
    await store.set_cursor("alarm:/guest/timer", "200")
    assert await store.get_cursor("alarm:/guest/timer") == "200"


# --------------------------------------------------------------------------- entities


async def test_created_entities_come_back_with_revision_one(store: SqlStore) -> None:
    trigger = Trigger("guest", "sensor", rules={"guest/r": ReducedRule(FullyQualifiedName("guest", "hello"),
                                                                       RuleStatus.ACTIVE)})
    rule = Rule("guest", "r", SENSOR, FullyQualifiedName("guest", "hello"))
    package = Package("guest", "utils", binding=Binding("whisk.system", "utils"))
    in_package = action("hello", path="guest/utils")
    written = await store.put_entities([action("hello"), trigger, rule, package, in_package])
    assert [e.revision for e in written] == [1, 1, 1, 1, 1]
    assert await store.get_entity("guest", "hello") == written[0]
    assert await store.get_entity("guest", "sensor") == written[1]
    assert await store.get_entity("guest", "r") == written[2]
    assert await store.get_entity("guest", "utils") == written[3]
    assert await store.get_entity("guest/utils", "hello") == written[4]
    assert await store.get_entity("guest", "missing") is None


async def test_the_entity_generation_counts_committed_entity_writes_only(store: SqlStore) -> None:
    start = await store.get_entity_generation()
    written = await store.put_entities([action("hello"), action("bye")])
    assert await store.get_entity_generation() == start + 1  # one transaction, however many entities
    await store.put_entities([], [written[1]])
    assert await store.get_entity_generation() == start + 2
    with pytest.raises(RevisionConflict):
        await store.put_entities([action("hello")])  # refused, rolled back: not counted
    await store.accept(Acceptance(invocations=[]))
    assert await store.get_entity_generation() == start + 2


async def test_update_needs_the_stored_revision(store: SqlStore) -> None:
    [v1] = await store.put_entities([action("hello")])
    [v2] = await store.put_entities([replace(v1, version="0.0.2")])
    assert v2.revision == 2
    with pytest.raises(RevisionConflict) as raised:
        await store.put_entities([replace(v1, version="0.0.3")])
    assert str(raised.value) == ("cannot write actions 'guest/hello' at revision 1: the stored one is at "
                                 "revision 2 (changed concurrently); re-read it and retry")
    assert await store.get_entity("guest", "hello") == v2


async def test_create_refuses_an_existing_name_in_any_collection(store: SqlStore) -> None:
    [stored] = await store.put_entities([action("hello")])
    with pytest.raises(RevisionConflict) as raised:
        await store.put_entities([action("hello")])
    assert str(raised.value) == ("cannot create actions 'guest/hello': it exists already at revision 1; "
                                 "update it with revision 1")
    with pytest.raises(RevisionConflict) as raised:
        await store.put_entities([Trigger("guest", "hello")])
    assert str(raised.value) == ("cannot write triggers 'guest/hello': the name is taken by actions "
                                 "'guest/hello' (revision 1); choose another name")
    assert await store.get_entity("guest", "hello") == stored
    # The same name in another path is another entity.
    [other] = await store.put_entities([action("hello", path="guest/pkg")])
    assert other.revision == 1


async def test_update_of_a_missing_entity_is_a_conflict(store: SqlStore) -> None:
    with pytest.raises(RevisionConflict) as raised:
        await store.put_entities([action("ghost", revision=3)])
    assert str(raised.value) == ("cannot write actions 'guest/ghost' at revision 3: it does not exist; "
                                 "create it with revision 0")


async def test_put_entities_is_all_or_nothing(store: SqlStore) -> None:
    [old] = await store.put_entities([action("old")])
    with pytest.raises(RevisionConflict):
        await store.put_entities([action("new"), replace(old, revision=5)])
    assert await store.get_entity("guest", "new") is None
    with pytest.raises(RevisionConflict):
        await store.put_entities([action("new")], deletes=[replace(old, revision=5)])
    assert await store.get_entity("guest", "new") is None
    assert await store.get_entity("guest", "old") == old


async def test_delete_checks_the_revision(store: SqlStore) -> None:
    [stored] = await store.put_entities([action("hello")])
    with pytest.raises(RevisionConflict) as raised:
        await store.put_entities([], deletes=[replace(stored, revision=2)])
    assert str(raised.value) == ("cannot delete actions 'guest/hello' at revision 2: the stored one is at "
                                 "revision 1 (changed concurrently); re-read it and retry")
    assert await store.get_entity("guest", "hello") == stored
    assert await store.put_entities([action("other")], deletes=[stored]) == [action("other", revision=1)]
    assert await store.get_entity("guest", "hello") is None
    with pytest.raises(RevisionConflict, match="it does not exist"):
        await store.put_entities([], deletes=[stored])


async def test_concurrent_creates_of_one_name_let_exactly_one_win(store: SqlStore, store_url: str) -> None:
    other = SqlStore(store_url)  # a second engine stands in for a second process
    await other.open()
    try:
        outcomes = await asyncio.gather(*(s.put_entities([action("race")]) for s in (store, other) * 5),
                                        return_exceptions=True)
    finally:
        await other.close()
    assert sum(isinstance(o, list) for o in outcomes) == 1
    assert sum(isinstance(o, RevisionConflict) for o in outcomes) == 9


async def test_entities_list_newest_first_with_skip_limit_and_package(store: SqlStore) -> None:
    await store.put_entities([action(f"a{i}", updated_ms=T0_MS + i) for i in range(5)]
                             + [action("p1", path="guest/pkg", updated_ms=T0_MS + 10),
                                action("mine", path="alice", updated_ms=T0_MS + 20),
                                Trigger("guest", "t", updated_ms=T0_MS + 30)])

    async def names(**kwargs: object) -> list[str]:
        return [e.name for e in await store.list_entities(Collection.ACTIONS, "guest", **kwargs)]  # type: ignore[arg-type]

    assert await names() == ["p1", "a4", "a3", "a2", "a1", "a0"]
    assert await names(skip=1, limit=2) == ["a4", "a3"]
    assert await names(package="pkg") == ["p1"]
    assert await names(package="") == ["a4", "a3", "a2", "a1", "a0"]
    assert await store.count_entities(Collection.ACTIONS, "guest") == 6
    assert await store.count_entities(Collection.ACTIONS, "guest", package="pkg") == 1
    assert await store.count_entities(Collection.TRIGGERS, "guest") == 1
    assert await store.count_entities(Collection.RULES, "guest") == 0


# --------------------------------------------------------------------------- accept


async def test_accept_writes_event_invocations_records_and_cursor_at_once(store: SqlStore) -> None:
    trigger_record = activation(aid(1), name="sensor")
    accepted = await store.accept(Acceptance(trigger_event("e1"), [invocation(aid(2)), invocation(aid(3))],
                                             [trigger_record], ("mqtt:sensors", "42")))
    assert accepted is True
    assert await store.count_events() == 1
    assert await store.count_events("/guest/sensor") == 1
    assert await store.count_events("/guest/other") == 0
    assert await store.list_pending() == [invocation(aid(2)), invocation(aid(3))]
    assert await store.get_activation("guest", aid(1)) == trigger_record
    assert await store.get_cursor("mqtt:sensors") == "42"


async def test_a_stored_event_is_read_back_by_its_id(store: SqlStore) -> None:
    event = replace(trigger_event("mqtt:ce:r-1"), data={"temp": 21.5}, subject="sensors/a", time_ms=T0_MS)
    assert await store.accept(Acceptance(event))
    assert await store.get_event("mqtt:ce:r-1") == event
    assert await store.get_event("mqtt:ce:r-2") is None


async def test_filter_verdicts_are_counted_once_per_accepted_event(store: SqlStore) -> None:
    batch = [Acceptance(trigger_event("c1"), matched_rules=["guest/hot"], filtered_rules=["guest/cold"]),
             Acceptance(trigger_event("c2"), filtered_rules=["guest/hot", "guest/cold"]),
             Acceptance(trigger_event("c1"), matched_rules=["guest/hot"])]  # a redelivery: not counted
    assert await asyncio.gather(*(store.accept(a) for a in batch)) == [True, True, False]
    assert await store.accept(Acceptance(trigger_event("c3"), matched_rules=["guest/hot"]))
    assert await store.get_rule_counts("guest/hot") == RuleCounts(matched=2, filtered=1)
    assert await store.get_rule_counts("guest/cold") == RuleCounts(matched=0, filtered=2)
    assert await store.get_rule_counts("guest/none") == RuleCounts()
    hot = Rule("guest", "hot", trigger=SENSOR, action=FullyQualifiedName("guest", "hello"))
    [hot] = await store.put_entities([hot])
    await store.put_entities([], [hot])  # deleting the rule forgets its counts
    assert await store.get_rule_counts("guest/hot") == RuleCounts()
    assert await store.get_rule_counts("guest/cold") == RuleCounts(matched=0, filtered=2)


async def test_a_repeated_event_id_is_refused_and_writes_nothing(store: SqlStore) -> None:
    assert await store.accept(Acceptance(trigger_event("e1"), [invocation(aid(1))], cursor=("feed", "1")))
    again = Acceptance(trigger_event("e1"), [invocation(aid(2))], [activation(aid(3))], ("feed", "2"))
    assert await store.accept(again) is False
    assert await store.list_pending() == [invocation(aid(1))]
    assert await store.get_activation("guest", aid(3)) is None
    assert await store.get_cursor("feed") == "1"
    assert await store.count_events() == 1


async def test_concurrent_accepts_of_one_event_accept_it_once(store: SqlStore) -> None:
    acceptances = [Acceptance(trigger_event("same"), [invocation(aid(i))], cursor=("feed", str(i)))
                   for i in range(10)]
    answers = await asyncio.gather(*(store.accept(a) for a in acceptances))
    assert answers.count(True) == 1
    winner = answers.index(True)
    assert await store.list_pending() == [invocation(aid(winner))]
    assert await store.get_cursor("feed") == str(winner)


async def test_concurrent_accepts_keep_the_last_cursor_and_every_invocation(store: SqlStore) -> None:
    acceptances = [Acceptance(trigger_event(f"e{i}"), [invocation(aid(i), T0_MS + i)], cursor=("feed", str(i)))
                   for i in range(50)]
    answers = await asyncio.gather(*(store.accept(a) for a in acceptances))
    assert answers == [True] * 50
    assert [i.activation_id for i in await store.list_pending()] == [aid(i) for i in range(50)]
    assert await store.get_cursor("feed") == "49"
    assert await store.count_events() == 50


async def test_one_failing_acceptance_does_not_fail_its_neighbours(store: SqlStore) -> None:
    assert await store.accept(Acceptance(invocations=[invocation(aid(1))]))
    bad = Acceptance(trigger_event("bad"), [invocation(aid(1))])  # pending id already taken
    goods = [Acceptance(trigger_event(f"good{i}"), [invocation(aid(10 + i))]) for i in range(5)]
    outcomes = await asyncio.gather(store.accept(goods[0]), store.accept(bad), *(store.accept(g) for g in goods[1:]),
                                    return_exceptions=True)
    assert outcomes[0] is True and outcomes[2:] == [True] * 4
    assert isinstance(outcomes[1], StoreError)
    assert str(outcomes[1]).startswith("could not accept event 'bad' in SqlStore(")
    assert await store.count_events() == 5
    assert len(await store.list_pending()) == 6


async def test_pending_invocations_list_oldest_first(store: SqlStore) -> None:
    await store.accept(Acceptance(invocations=[invocation(aid(1), T0_MS + 30), invocation(aid(2), T0_MS + 10)]))
    await store.accept(Acceptance(invocations=[invocation(aid(3), T0_MS + 20)]))
    assert [i.activation_id for i in await store.list_pending()] == [aid(2), aid(3), aid(1)]


# --------------------------------------------------------------------------- complete


async def test_complete_records_the_activation_and_drops_its_pending_row(store: SqlStore) -> None:
    await store.accept(Acceptance(invocations=[invocation(aid(1)), invocation(aid(2))]))
    record = activation(aid(1))
    assert await store.complete(record) is True
    assert await store.get_activation("guest", aid(1)) == record
    assert await store.get_activation("alice", aid(1)) is None
    assert await store.list_pending() == [invocation(aid(2))]


async def test_delivery_attempts_are_listed_under_their_event(store: SqlStore) -> None:
    def attempt(activation_id: str, n: int, event_id: str, namespace: str = "guest") -> Activation:
        return replace(activation(activation_id, T0_MS + n, namespace=namespace),
                       annotations=(Parameter("event", event_id), Parameter("attempt", n)))

    plain = replace(activation(aid(9)), annotations=(Parameter("event", "evt-1"),))  # found by key, not filed
    explicit = replace(activation(aid(5), T0_MS + 5), annotations=(Parameter("eventId", "evt-1"),))
    for record in (attempt(aid(2), 2, "evt-1"), attempt(aid(1), 1, "evt-1"), attempt(aid(3), 1, "evt-2"),
                   attempt(aid(4), 1, "evt-1", namespace="alice"), plain, explicit):
        await store.accept(Acceptance(activations=[record]))
    listed = await store.list_event_activations("guest", "evt-1")
    assert [r.activation_id for r in listed] == [aid(1), aid(2), aid(5)]  # oldest first
    assert listed[0] == attempt(aid(1), 1, "evt-1")
    assert [r.activation_id for r in await store.list_event_activations("alice", "evt-1")] == [aid(4)]
    assert await store.list_event_activations("guest", "evt-9") == []


async def test_a_second_record_for_one_activation_is_refused(store: SqlStore) -> None:
    await store.accept(Acceptance(invocations=[invocation(aid(1))]))
    first = activation(aid(1), result="first")
    assert await store.complete(first) is True
    await store.accept(Acceptance(invocations=[invocation(aid(2))]))
    assert await store.complete(activation(aid(1), result="second")) is False
    assert await store.get_activation("guest", aid(1)) == first


async def test_racing_completes_store_exactly_one_record_each(store: SqlStore, store_url: str) -> None:
    other = SqlStore(store_url)  # a second engine stands in for a second invoker process
    await other.open()
    try:
        await store.accept(Acceptance(invocations=[invocation(aid(i)) for i in range(40)]))
        answers = await asyncio.gather(*(s.complete(activation(aid(i), result=name))
                                         for i in range(40) for s, name in ((store, "a"), (other, "b"))))
    finally:
        await other.close()
    assert answers.count(True) == 40
    assert [answers[2 * i] != answers[2 * i + 1] for i in range(40)] == [True] * 40
    assert await store.list_pending() == []
    assert await store.count_activations(ActivationQuery("guest", limit=100)) == 40


async def test_many_concurrent_completes_all_succeed(store: SqlStore) -> None:
    await store.accept(Acceptance(invocations=[invocation(aid(i)) for i in range(300)]))
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(store.complete(activation(aid(i)))) for i in range(300)]
    assert [t.result() for t in tasks] == [True] * 300
    assert await store.list_pending() == []


async def test_a_batch_repeating_one_id_records_it_once(store: SqlStore) -> None:
    answers = await asyncio.gather(*(store.complete(activation(aid(7), result=str(i))) for i in range(5)))
    assert answers.count(True) == 1
    assert await store.get_activation("guest", aid(7)) == activation(aid(7), result=str(answers.index(True)))


# --------------------------------------------------------------------------- listing activations


async def test_activations_list_newest_first_with_filters(store: SqlStore) -> None:
    records = [
        activation(aid(1), T0_MS + 1, name="hello", path="guest/hello"),
        activation(aid(2), T0_MS + 2, name="hello", path="guest/utils/hello"),
        activation(aid(3), T0_MS + 3, name="hello", path="guest/hello"),
        activation(aid(4), T0_MS + 4, name="sensor"),
        activation(aid(5), T0_MS + 5, name="hello", path="guest/hello", namespace="alice"),
        activation(aid(6), T0_MS + 3, name="shared", path="bob/shared"),
    ]
    for record in records:
        assert await store.complete(record)

    async def ids(**kwargs: object) -> list[str]:
        query = ActivationQuery("guest", **kwargs)  # type: ignore[arg-type]
        listed = [a.activation_id for a in await store.list_activations(query)]
        assert await store.count_activations(replace(query, skip=0, limit=30)) >= len(listed)
        return listed

    assert await ids() == [aid(4), aid(6), aid(3), aid(2), aid(1)]
    assert await ids(name="hello") == [aid(3), aid(1)]
    assert await ids(name="utils/hello") == [aid(2)]
    assert await ids(name="sensor") == [aid(4)]
    assert await ids(name="shared") == [aid(6)]
    assert await ids(since_ms=T0_MS + 2, upto_ms=T0_MS + 3) == [aid(6), aid(3), aid(2)]
    assert await ids(skip=1, limit=2) == [aid(6), aid(3)]
    assert await store.count_activations(ActivationQuery("guest")) == 5
    assert await store.count_activations(ActivationQuery("guest", name="hello", since_ms=T0_MS + 2)) == 1
    assert await store.count_activations(ActivationQuery("alice")) == 1


# --------------------------------------------------------------------------- SQLite specifics


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = SqlStore(sqlite_url(path))
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_two_stores_on_one_sqlite_file_never_see_a_locked_database(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    first, second = SqlStore(url), SqlStore(url)
    await first.open()
    await second.open()
    try:
        async with asyncio.TaskGroup() as group:
            for i in range(200):
                group.create_task((first, second)[i % 2].accept(Acceptance(trigger_event(f"e{i}"),
                                                                           [invocation(aid(i))])))
        assert await first.count_events() == 200
    finally:
        await first.close()
        await second.close()


async def test_a_write_waiting_for_another_connections_lock_leaves_the_loop_running(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SqlStore(sqlite_url(path))
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)  # stands in for another process's writer
    try:
        other.execute("BEGIN IMMEDIATE")
        async with asyncio.TaskGroup() as group:
            writing = group.create_task(store.set_cursor("feed", "1"))
            for _ in range(20):  # the loop keeps turning while the write waits for the lock
                await asyncio.sleep(0)
            assert not writing.done()
            assert await store.get_cursor("feed") is None  # reads do not wait for the writer
            other.execute("COMMIT")
        assert await store.get_cursor("feed") == "1"
    finally:
        other.close()
        await store.close()


async def test_the_wal_is_copied_into_the_database_every_few_hundred_writes_beside_them(tmp_path: Path) -> None:
    # In WAL mode the database file changes only at checkpoints: its growth shows the background
    # (PASSIVE) checkpoints copied the records, and no write waited for a TRUNCATE one.
    path = tmp_path / "wal.db"
    store = SqlStore(sqlite_url(path))
    await store.open()
    try:
        database_bytes = path.stat().st_size
        for i in range(3 * CHECKPOINT_EVERY_WRITES):
            assert await store.complete(activation(aid(i)))
        # asked for after commits 200 and 400; one asked for while another runs follows it
        await wait_until(lambda: _statistics(store).background_checkpoints >= 2)
        assert _statistics(store).checkpoints == 0
        assert path.stat().st_size > database_bytes
        assert path.with_name("wal.db-wal").stat().st_size <= WAL_LIMIT_BYTES
        assert await store.count_activations(ActivationQuery("guest")) == 3 * CHECKPOINT_EVERY_WRITES
    finally:
        await store.close()


def _statistics(store: SqlStore) -> WriterStatistics:
    statistics = store.statistics()
    assert statistics is not None
    return statistics


_CHILD = """
import asyncio, sys
from triggerhub.model import *
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

async def main():
    store = SqlStore(sys.argv[1])
    await store.open()
    event = TriggerEvent("durable", "test", "t", FullyQualifiedName("guest", "sensor"), time_ms=1)
    assert await store.accept(Acceptance(event, cursor=("feed", "7")))
    print("accepted", flush=True)
    sys.stdin.read()  # hold the store open until killed

asyncio.run(main())
"""


async def test_accepted_work_survives_kill_9_with_synchronous_normal(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "crash.db")
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, url, stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    assert await child.stdout.readline() == b"accepted\n"
    child.kill()
    assert await child.wait() == -9
    store = SqlStore(url)
    await store.open()
    try:
        assert await store.count_events("/guest/sensor") == 1
        assert await store.get_cursor("feed") == "7"
    finally:
        await store.close()


_WRITER_CHILD = """
import asyncio, sys
from triggerhub.model import *
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

async def main():
    store = SqlStore(sys.argv[1])
    await store.open()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(300):  # one transaction each, so the two processes take turns at the lock
        event = TriggerEvent(f"child{i}", "test", "t", FullyQualifiedName("guest", "sensor"), time_ms=i)
        assert await store.accept(Acceptance(event, cursor=("child", str(i))))
    await store.close()
    print("done", flush=True)

asyncio.run(main())
"""


async def test_two_processes_writing_one_sqlite_file_both_succeed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "two.db")
    store = SqlStore(url)
    await store.open()
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER_CHILD, url,
                                                 stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert await child.stdout.readline() == b"ready\n"
        child.stdin.write(b"go\n")
        for i in range(300):
            assert await store.accept(Acceptance(trigger_event(f"parent{i}"), [invocation(aid(i))]))
        assert await child.stdout.readline() == b"done\n"
        assert await child.wait() == 0
        assert await store.count_events() == 600
        assert len(await store.list_pending()) == 300
        assert await store.get_cursor("child") == "299"
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await store.close()


# --------------------------------------------------------------------------- errors


def test_bad_settings_are_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sqlite_synchronous='sometimes' is not one of OFF, NORMAL, FULL, EXTRA"):
        SqlStore(sqlite_url(tmp_path / "x.db"), sqlite_synchronous="sometimes")
    with pytest.raises(ConfigError, match="store URL 'not a url' is not a database URL"):
        SqlStore("not a url")
    with pytest.raises(ConfigError, match="store URL backend 'mysql' is not supported"):
        SqlStore("mysql://u@127.0.0.1/db")
    with pytest.raises(ConfigError, match="store URL names no SQLite file"):
        SqlStore("sqlite+aiosqlite://")


async def test_an_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"could not open the database and apply schema migrations in "
                                         r"SqlStore\('sqlite\+aiosqlite:///.*/missing/x.db'\): OperationalError"):
        await SqlStore(sqlite_url(tmp_path / "missing" / "x.db")).open()
    with pytest.raises(StoreError) as raised:
        await SqlStore("postgresql+asyncpg://th:secret@127.0.0.1:1/th").open()
    assert str(raised.value).startswith("could not open the database and apply schema migrations in "
                                        "SqlStore('postgresql+asyncpg://th:***@127.0.0.1:1/th'): ")
    assert "secret" not in str(raised.value)


async def test_a_closed_store_says_so(store: SqlStore) -> None:
    await store.close()
    with pytest.raises(StoreError, match=r"store SqlStore\(.*\) is not open; call open\(\) first"):
        await store.get_subject("x")


async def test_routes_are_kept_per_namespace_replaced_by_key_and_deleted_together(store: SqlStore) -> None:
    book = ApiRoute("guest", "/shop", "/books/{id}", "GET", "/guest/book", updated_ms=T0_MS)
    page = ApiRoute("guest", "/shop", "/books/{id}/pages", "POST", "/guest/shelf/page", ResponseType.HTTP,
                    "shop-api", cors=False, project="library", updated_ms=T0_MS)
    other = ApiRoute("alice", "/shop", "/books/{id}", "GET", "/alice/book", updated_ms=T0_MS)
    for route in (page, book, other):
        await as_store(store).put_route(route)
    moved = ApiRoute("guest", "/shop", "/books/{id}", "GET", "/guest/book2", updated_ms=T0_MS + 1)
    await store.put_route(moved)

    assert await store.list_routes("guest") == [moved, page]
    assert await store.list_routes("guest", base_path="/other") == []
    assert await store.delete_routes([moved, page, ApiRoute("guest", "/no", "/", "GET", "/guest/x")]) == 2
    assert await store.list_routes("guest") == []
    assert await store.list_routes("alice") == [other]


# --------------------------------------------------------------------------- SQLite group commit and WAL bound


async def test_concurrent_writes_of_every_kind_share_transactions_and_answer_after_commit(tmp_path: Path) -> None:
    path = tmp_path / "group.db"
    store = SqlStore(sqlite_url(path))
    await store.open()
    await store.accept(Acceptance(invocations=[invocation(aid(i)) for i in range(40)]))
    other = sqlite3.connect(path, isolation_level=None)  # holds the write lock while the writes queue up
    try:
        other.execute("BEGIN IMMEDIATE")
        async with asyncio.TaskGroup() as group:
            accepts = [group.create_task(store.accept(Acceptance(trigger_event(f"e{i}"), [invocation(aid(100 + i))])))
                       for i in range(40)]
            completes = [group.create_task(store.complete(activation(aid(i)))) for i in range(40)]
            cursors = [group.create_task(store.set_cursor(f"feed{i}", str(i))) for i in range(20)]
            for _ in range(20):
                await asyncio.sleep(0)
            assert [t.done() for t in accepts + completes + cursors] == [False] * 100  # nothing answers before COMMIT
            other.execute("COMMIT")
        assert [t.result() for t in accepts + completes] == [True] * 80
        statistics = store.statistics()
        assert statistics is not None
        # 1 (the accept above) + the 100 writes in at most 3 commits: the first one, taken before
        # the others queued, then at most 64 writes per transaction.
        assert statistics.writes == 101
        assert 2 <= statistics.transactions <= 4
        assert other.execute("SELECT count(*) FROM events").fetchone() == (40,)
        assert other.execute("SELECT count(*) FROM activations").fetchone() == (40,)
        assert other.execute("SELECT count(*) FROM pending").fetchone() == (40,)
        assert await store.get_cursor("feed19") == "19"
    finally:
        other.close()
        await store.close()


async def test_a_write_while_the_writer_is_idle_commits_in_the_loop_turn_that_made_it(tmp_path: Path) -> None:
    path = tmp_path / "inline.db"
    store = SqlStore(sqlite_url(path))
    await store.open()
    try:
        writing = store.set_cursor("feed", "1")
        with pytest.raises(StopIteration):  # committed without suspending: no hand-off to the writer thread
            writing.send(None)
        with sqlite3.connect(path) as other:  # committed: another connection reads it
            assert other.execute("SELECT value FROM cursors WHERE feed_id = 'feed'").fetchone() == ("1",)
        assert (_statistics(store).transactions, _statistics(store).inline_transactions) == (1, 1)
    finally:
        await store.close()


async def test_with_synchronous_full_every_write_commits_in_the_writer_thread(tmp_path: Path) -> None:
    store = SqlStore(sqlite_url(tmp_path / "full.db"), sqlite_synchronous="FULL")  # a COMMIT fsyncs: not in the loop
    await store.open()
    try:
        for i in range(3):
            await store.set_cursor("feed", str(i))
        assert (_statistics(store).transactions, _statistics(store).inline_transactions) == (3, 0)
        assert await store.get_cursor("feed") == "2"
    finally:
        await store.close()


async def test_a_write_made_while_the_writer_has_one_unanswered_queues_behind_it(tmp_path: Path) -> None:
    path = tmp_path / "order.db"
    store = SqlStore(sqlite_url(path))
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)  # holds the write lock: the first write goes to the writer
    try:
        other.execute("BEGIN IMMEDIATE")
        first = asyncio.create_task(store.set_cursor("feed", "first"))
        async with asyncio.timeout(10):  # until the writer has taken it and waits for the lock
            while _statistics(store).transactions == 0:
                await asyncio.sleep(0.001)
        other.execute("COMMIT")  # the lock is free, the first write not yet answered
        second = store.set_cursor("feed", "second")
        answer = second.send(None)  # suspends on the writer's answer: queued, not committed before the first
        assert isinstance(answer, asyncio.Future) and not answer.done()
        await asyncio.wait_for(first, 10)
        await asyncio.wait([answer], timeout=10)
        with pytest.raises(StopIteration):
            second.send(None)
        assert await store.get_cursor("feed") == "second"
        assert _statistics(store).inline_transactions == 0
    finally:
        other.close()
        await store.close()


async def test_the_wal_stays_under_its_bound_while_far_more_than_the_bound_is_written(tmp_path: Path) -> None:
    path = tmp_path / "bounded.db"
    wal = path.with_name("bounded.db-wal")
    store = SqlStore(sqlite_url(path))
    await store.open()
    big = "x" * 64 * 1024  # each record ~20 WAL pages
    count = 3 * WAL_LIMIT_BYTES // len(big)  # three times the bound, one commit each
    largest_wal_bytes = 0
    try:
        for i in range(count):
            assert await store.complete(activation(aid(i), result=big))
            largest_wal_bytes = max(largest_wal_bytes, wal.stat().st_size)
        statistics = store.statistics()
        assert statistics is not None and statistics.checkpoints >= 2
        # the bound: WAL_LIMIT_BYTES plus the one write committed after the WAL passed it
        assert largest_wal_bytes <= WAL_LIMIT_BYTES + 256 * 1024
        assert wal.stat().st_size <= WAL_LIMIT_BYTES + 256 * 1024
        assert await store.count_activations(ActivationQuery("guest", limit=200)) == count
        assert await store.get_activation("guest", aid(count - 1)) == activation(aid(count - 1), result=big)
    finally:
        await store.close()


async def test_a_write_cancelled_before_the_writer_takes_it_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "cancel.db"
    store = SqlStore(sqlite_url(path))
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)  # holds the write lock: the writer waits on it
    try:
        other.execute("BEGIN IMMEDIATE")
        async with asyncio.TaskGroup() as group:
            first = group.create_task(store.set_cursor("first", "1"))
            async with asyncio.timeout(10):  # until the writer has taken `first` and waits for the lock
                while (statistics := store.statistics()) is None or statistics.transactions == 0:
                    await asyncio.sleep(0.001)
            doomed = group.create_task(store.accept(Acceptance(trigger_event("doomed"), cursor=("doomed", "1"))))
            for _ in range(5):
                await asyncio.sleep(0)
            doomed.cancel()
            other.execute("COMMIT")
        assert first.done() and doomed.cancelled()
        assert await store.get_cursor("first") == "1"
        assert await store.get_cursor("doomed") is None
        assert await store.count_events() == 0
    finally:
        other.close()
        await store.close()


async def test_every_entity_write_and_delete_raises_the_entity_generation(store: SqlStore) -> None:
    assert await store.get_entity_generation() == 0
    (tick,) = await store.put_entities([Trigger("guest", "tick")])
    (rule,) = await store.put_entities([Rule("guest", "r", FullyQualifiedName("guest", "tick"),
                                             FullyQualifiedName("guest", "hello"))])
    assert await store.get_entity_generation() == 2
    await store.put_entities([], [tick, rule])
    assert await store.get_entity_generation() == 3
    with pytest.raises(RevisionConflict):  # a refused write is rolled back with its counter
        await store.put_entities([tick])
    assert await store.get_entity_generation() == 3
