"""FeedManager: the OpenWhisk feed lifecycle over a fake Store, and feeds surviving a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.plugins.clock import TestClock, utc_s
from tests.plugins.feeds import FakeStore
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.engine.feed_manager import FeedManager, FeedMetrics, catalogue
from triggerhub.errors import FORBIDDEN, BadRequest, Conflict, Forbidden, NotFound, StoreError
from triggerhub.model import FullyQualifiedName, ReducedRule, Rule, RuleStatus, Trigger, TriggerEvent
from triggerhub.store.base import Acceptance, FeedRegistration

ALARM, ONCE = "/whisk.system/alarms/alarm", "/whisk.system/alarms/once"
START = "2024-06-01T00:00:30"
CRON = {"cron": "* * * * *", "strict": True, "trigger_payload": "tick"}


def manager_for(store: FakeStore, clock: TestClock) -> FeedManager:
    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        return await store.accept(Acceptance(event=event, cursor=cursor))
    return FeedManager(store, fire, kinds=FEED_KINDS, clock=clock)


def call(event: str, **params: object) -> dict[str, object]:
    return {"lifecycleEvent": event, "triggerName": "/guest/tick", "authKey": "uuid:secret-key", **params}


def test_catalogue_names_every_builtin_feed() -> None:
    assert sorted(FEED_KINDS) == [
        "/whisk.system/alarms/alarm", "/whisk.system/alarms/interval", "/whisk.system/alarms/once",
        "/whisk.system/files/watch", "/whisk.system/kafka/consume", "/whisk.system/mqtt/subscribe",
        "/whisk.system/postgres/changes", "/whisk.system/sqlite/changes", "/whisk.system/webhook/webhook"]
    assert FEED_KINDS[ALARM].catalogue.parameters[0] == "cron"
    assert [feed.fqn for feed in catalogue(FEED_KINDS)] == list(FEED_KINDS)


async def test_create_read_pause_unpause_delete(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s(START))
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store, clock)
        await manager.start(tg)
        assert await manager.lifecycle("guest", "uuid:secret-key", ALARM, call("CREATE", **CRON)) == {
            "triggerName": "/guest/tick", "status": "active"}
        assert "secret-key" not in repr(fake_store.feeds)  # the caller's key is never stored
        await clock.advance_to(utc_s("2024-06-01T00:02:30"))
        read = await manager.lifecycle("guest", "k", ALARM, call("READ"))
        assert read == {
            "config": {"name": "tick", "namespace": "guest", "payload": {"payload": "tick"}, "catchUp": "latest",
                       "catchUpMax": 10, "cron": "* * * * *", "timezone": None, "strict": True},
            "status": {"active": True, "dateChanged": int(utc_s(START) * 1000),
                       "dateChangedISO": "2024-06-01T00:00:30.000Z", "reason": ""},
            "metrics": {"received": 2, "fired": 2, "rejected": 0},
        }
        await manager.lifecycle("guest", "k", ALARM, call("PAUSE"))
        await clock.advance_to(utc_s("2024-06-01T00:05:30"))
        assert len(fake_store.events) == 2
        assert (await manager.lifecycle("guest", "k", ALARM, call("READ")))["status"]["reason"] == "paused by PAUSE"
        await manager.lifecycle("guest", "k", ALARM, call("UNPAUSE"))  # instants paused over are not caught up
        await clock.advance_to(utc_s("2024-06-01T00:06:30"))
        assert len(fake_store.events) == 3
        assert await manager.lifecycle("guest", "k", ALARM, call("DELETE")) == {
            "triggerName": "/guest/tick", "status": "deleted"}
        await clock.advance_to(utc_s("2024-06-01T00:09:30"))
        assert (len(fake_store.events), fake_store.feeds) == (3, {})
        await manager.stop()


async def test_lifecycle_errors(fake_store: FakeStore) -> None:
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store, TestClock(utc_s(START)))
        await manager.start(tg)
        with pytest.raises(BadRequest, match="^unsupported lifecycleEvent$"):
            await manager.lifecycle("guest", "k", ALARM, call("RESTART"))
        with pytest.raises(BadRequest, match=r"^cron pattern '\* \*' is not valid$"):
            await manager.lifecycle("guest", "k", ALARM, call("CREATE", cron="* *"))
        with pytest.raises(Forbidden) as forbidden:
            await manager.lifecycle("alice", "k", ALARM, call("CREATE", **CRON))
        assert forbidden.value.message == FORBIDDEN
        with pytest.raises(NotFound) as missing:
            await manager.lifecycle("guest", "k", ALARM, call("READ"))
        assert missing.value.message == ("trigger '/guest/tick' has no /whisk.system/alarms/alarm feed; "
                                         "create it with lifecycleEvent CREATE")
        await manager.lifecycle("guest", "k", ALARM, call("CREATE", **CRON))
        with pytest.raises(Conflict):
            await manager.lifecycle("guest", "k", ALARM, call("CREATE", **CRON))
        await manager.stop()
    assert list(fake_store.feeds) == ["/guest/tick"]


async def test_feeds_survive_a_restart_without_firing_an_instant_twice(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s(START))
    async with asyncio.TaskGroup() as tg:
        first = manager_for(fake_store, clock)
        await first.start(tg)
        await first.lifecycle("guest", "k", ALARM, call("CREATE", **CRON))
        await clock.advance_to(utc_s("2024-06-01T00:03:00"))
        await first.stop()
    async with asyncio.TaskGroup() as tg:
        second = manager_for(fake_store, clock)  # a new process: nothing in memory, only the store
        await second.start(tg)
        await clock.advance_to(utc_s("2024-06-01T00:05:30"))
        await second.stop()
    assert sorted(e.time_ms for e in fake_store.events.values()) == [
        int(utc_s(f"2024-06-01T00:0{m}:00") * 1000) for m in range(1, 6)]
    assert second.metrics("/guest/tick") == FeedMetrics(received=2, fired=2, rejected=0)


async def test_once_with_delete_after_fire_rules_deletes_trigger_and_rules(fake_store: FakeStore) -> None:
    rule = Rule("guest", "r", FullyQualifiedName("guest", "tick"), FullyQualifiedName("guest", "act"))
    trigger = Trigger("guest", "tick", rules={"guest/r": ReducedRule(rule.action, RuleStatus.ACTIVE)})
    await fake_store.put_entities([trigger, rule])
    clock = TestClock(utc_s(START))
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(fake_store, clock)
        await manager.start(tg)
        await manager.lifecycle("guest", "k", ONCE, call("CREATE", date="2024-06-01T00:10:00Z",
                                                         deleteAfterFire="rules"))
        await clock.advance_to(utc_s("2024-06-01T01:00:00"))
        await manager.stop()
    assert (len(fake_store.events), fake_store.feeds, fake_store.entities) == (1, {}, {})


def flaky_fire(store: FakeStore, *errors: Exception) -> Callable[[TriggerEvent, tuple[str, str] | None], Awaitable[bool]]:
    """A fire that raises `errors` in turn, then stores like the engine."""
    pending = list(errors)

    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        if pending:
            raise pending.pop(0)
        return await store.accept(Acceptance(event=event, cursor=cursor))
    return fire


async def test_a_store_outage_is_retried_and_the_instant_fires_once(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s(START))
    fire = flaky_fire(fake_store, StoreError("database is locked"), StoreError("database is locked"))
    async with asyncio.TaskGroup() as tg:
        manager = FeedManager(fake_store, fire, kinds=FEED_KINDS, clock=clock)
        await manager.start(tg)
        await manager.lifecycle("guest", "k", ALARM, call("CREATE", **CRON))
        await clock.advance_to(utc_s("2024-06-01T00:01:30"))
        await manager.stop()
    assert [e.time_ms for e in fake_store.events.values()] == [int(utc_s("2024-06-01T00:01:00") * 1000)]
    assert fake_store.cursors == {"/guest/tick#fired": str(int(utc_s("2024-06-01T00:01:00") * 1000))}
    assert manager.metrics("/guest/tick") == FeedMetrics(received=3, fired=1, rejected=2)
    assert fake_store.feeds["/guest/tick"].status == "active"


async def test_a_refused_event_pauses_the_feed_with_the_reason_until_unpaused(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s(START))
    reason = "trigger /guest/tick does not exist; delete its feed or recreate the trigger"
    fire = flaky_fire(fake_store, NotFound(reason))
    async with asyncio.TaskGroup() as tg:
        manager = FeedManager(fake_store, fire, kinds=FEED_KINDS, clock=clock)
        await manager.start(tg)
        await manager.lifecycle("guest", "k", ALARM, call("CREATE", **CRON))
        await clock.advance_to(utc_s("2024-06-01T00:03:30"))  # refused at 00:01, nothing fired after it
        read = await manager.lifecycle("guest", "k", ALARM, call("READ"))
        assert (read["status"]["active"], read["status"]["reason"]) == (False, reason)
        assert (fake_store.events, fake_store.feeds["/guest/tick"].status) == ({}, "paused")
        assert manager.metrics("/guest/tick") == FeedMetrics(received=1, fired=0, rejected=1)
        await manager.lifecycle("guest", "k", ALARM, call("UNPAUSE"))
        await clock.advance_to(utc_s("2024-06-01T00:04:30"))
        await manager.stop()
    assert [e.time_ms for e in fake_store.events.values()] == [int(utc_s("2024-06-01T00:04:00") * 1000)]


async def test_the_manager_runs_only_the_kinds_it_is_given(fake_store: FakeStore) -> None:
    only_alarms = {fqn: kind for fqn, kind in FEED_KINDS.items() if fqn.startswith("/whisk.system/alarms/")}
    async with asyncio.TaskGroup() as tg:
        manager = FeedManager(fake_store, flaky_fire(fake_store), kinds=only_alarms, clock=TestClock(utc_s(START)))
        await manager.start(tg)
        with pytest.raises(NotFound) as unknown:
            await manager.lifecycle("guest", "k", "/whisk.system/webhook/webhook", call("CREATE", verify="none"))
        assert unknown.value.message == (
            "feed '/whisk.system/webhook/webhook' is not a built-in feed; known: /whisk.system/alarms/alarm, "
            "/whisk.system/alarms/interval, /whisk.system/alarms/once")
        with pytest.raises(NotFound) as no_hook:
            await manager.handle_webhook("guest", "tick", {}, b"{}")
        assert no_hook.value.message == "trigger '/guest/tick' has no webhook feed; create one with --feed a webhook feed"
        await manager.stop()
    assert fake_store.feeds == {}


class FlakyFeedStore(FakeStore):
    """Its next `put_feed` calls fail as a store outage does."""

    def __init__(self) -> None:
        super().__init__()
        self.put_feed_failures = 0

    async def put_feed(self, registration: FeedRegistration) -> None:
        if self.put_feed_failures:
            self.put_feed_failures -= 1
            raise StoreError("database is locked")
        await super().put_feed(registration)


async def test_a_store_outage_while_a_once_alarm_finishes_is_retried() -> None:
    store = FlakyFeedStore()
    clock = TestClock(utc_s(START))
    async with asyncio.TaskGroup() as tg:
        manager = manager_for(store, clock)
        await manager.start(tg)
        await manager.lifecycle("guest", "k", ONCE, call("CREATE", date="2024-06-01T00:10:00Z"))
        store.put_feed_failures = 2
        await clock.advance_to(utc_s("2024-06-01T01:00:00"))
        await manager.stop()
    registration = store.feeds["/guest/tick"]
    assert (len(store.events), registration.status, registration.reason, store.put_feed_failures) == (
        1, "disabled", "fired once", 0)
