"""Alarm feeds: validation messages, DST policy, catch-up, and no instant fired twice."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from tests.plugins.clock import TestClock, utc_s
from tests.plugins.feeds import FakeStore, StoreEmit
from triggerhub.errors import BadRequest
from triggerhub.feeds.alarms import AlarmFeed, AlarmKind, CatchUp, parse_alarm_config, preview

TRIGGER = "/guest/tick"
NOW_MS = int(utc_s("2024-10-26T12:00:00") * 1000)


def fired_utc(store: FakeStore) -> list[str]:
    return [datetime.fromtimestamp(e.time_ms / 1000, timezone.utc).strftime("%m-%dT%H:%M")
            for e in sorted(store.events.values(), key=lambda e: e.time_ms)]


def utc_minutes(start: str, count: int) -> list[str]:
    first = utc_s(start)
    return [datetime.fromtimestamp(first + 60 * i, timezone.utc).strftime("%m-%dT%H:%M") for i in range(count)]


async def run_alarm(store: FakeStore, clock: TestClock, params: dict, until: str, *, kind=AlarmKind.ALARM,
                    not_before: str | None = None, finished: list[str] | None = None) -> None:
    config = parse_alarm_config(kind, TRIGGER, params, NOW_MS, require_future=False)
    emit = StoreEmit(store, TRIGGER)

    async def on_finished(reason: str) -> None:
        (finished if finished is not None else []).append(reason)

    async with asyncio.TaskGroup() as tg:
        feed = AlarmFeed(config, clock=clock, tasks=tg, load_cursor=emit.load, on_finished=on_finished,
                         not_before_ms=int(utc_s(not_before) * 1000) if not_before else clock.now_ms())
        await feed.start(emit)
        await clock.advance_to(utc_s(until))
        await feed.stop()


@pytest.mark.parametrize(("params", "message"), [
    ({"cron": "61 * * * *"}, "cron pattern '61 * * * *' is not valid"),
    ({"cron": "* * * *"}, "cron pattern '* * * *' is not valid"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "Invalid timezone."),
    ({}, "alarms trigger feeds must include a cron parameter"),
    ({"cron": "* * * * *", "startDate": "2020-01-01T00:00:00Z"},
     "startDate parameter '2020-01-01T00:00:00Z' must be sometime in the future"),
    ({"cron": "* * * * *", "catchUp": "some"}, "catchUp parameter 'some' must be one of none, latest, all"),
])
def test_alarm_validation_messages(params: dict, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_alarm_config(AlarmKind.ALARM, TRIGGER, params, NOW_MS)
    assert caught.value.message == message


def test_interval_and_once_validation() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_alarm_config(AlarmKind.INTERVAL, TRIGGER, {"minutes": 0}, NOW_MS)
    assert caught.value.message == "the minutes parameter must be an integer greater than zero, got 0"
    with pytest.raises(BadRequest) as caught:
        parse_alarm_config(AlarmKind.ONCE, TRIGGER, {}, NOW_MS)
    assert caught.value.message == "alarms once trigger feeds must include a date parameter"
    interval = parse_alarm_config(AlarmKind.INTERVAL, TRIGGER, {"minutes": 5, "trigger_payload": "hi"}, NOW_MS)
    assert (interval.start_ms, interval.payload) == (NOW_MS + 30_000, {"payload": "hi"})


async def test_cron_every_minute_across_fall_back_in_berlin_fires_each_wall_minute_once(fake_store: FakeStore) -> None:
    # 2024-10-27 01:00Z: Berlin goes from 03:00 CEST back to 02:00 CET.
    clock = TestClock(utc_s("2024-10-26T23:55:30"))
    params = {"cron": "* * * * *", "timezone": "Europe/Berlin", "strict": True}
    await run_alarm(fake_store, clock, params, "2024-10-27T02:05:30")
    # First pass of 02:00-02:59 (00:00Z-00:59Z) fires; the repeated hour (01:00Z-01:59Z) is silent.
    assert fired_utc(fake_store) == utc_minutes("2024-10-26T23:56:00", 64) + utc_minutes("2024-10-27T02:00:00", 6)


async def test_cron_across_spring_forward_skips_the_missing_wall_time(fake_store: FakeStore) -> None:
    # 2024-03-31 01:00Z: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
    clock = TestClock(utc_s("2024-03-29T12:00:00"))
    params = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "strict": True}
    await run_alarm(fake_store, clock, params, "2024-04-02T12:00:00")
    assert fired_utc(fake_store) == ["03-30T01:30", "04-01T00:30", "04-02T00:30"]


async def test_every_minute_across_spring_forward_fires_every_real_minute(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s("2024-03-31T00:57:30"))
    params = {"cron": "* * * * *", "timezone": "Europe/Berlin", "strict": True}
    await run_alarm(fake_store, clock, params, "2024-03-31T01:02:30")
    assert fired_utc(fake_store) == utc_minutes("2024-03-31T00:58:00", 5)


async def test_restart_mid_schedule_fires_no_instant_twice(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s("2024-10-27T00:00:30"))
    params = {"cron": "* * * * *", "timezone": "Europe/Berlin", "strict": True}
    await run_alarm(fake_store, clock, params, "2024-10-27T00:10:00")  # stop exactly on an instant
    await run_alarm(fake_store, clock, params, "2024-10-27T00:20:30")
    assert fired_utc(fake_store) == utc_minutes("2024-10-27T00:01:00", 20)
    assert fake_store.cursors == {f"{TRIGGER}#fired": str(int(utc_s("2024-10-27T00:20:00") * 1000))}


async def test_two_processes_on_one_store_store_each_instant_once(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s("2024-10-27T00:00:30"))
    params = {"cron": "* * * * *", "strict": True}
    config = parse_alarm_config(AlarmKind.ALARM, TRIGGER, params, NOW_MS)
    emits = [StoreEmit(fake_store, TRIGGER), StoreEmit(fake_store, TRIGGER)]

    async def on_finished(reason: str) -> None: ...

    async with asyncio.TaskGroup() as tg:
        feeds = [AlarmFeed(config, clock=clock, tasks=tg, load_cursor=e.load, on_finished=on_finished,
                           not_before_ms=clock.now_ms()) for e in emits]
        for feed, emit in zip(feeds, emits):
            await feed.start(emit)
        await clock.advance_to(utc_s("2024-10-27T00:05:30"))
        for feed in feeds:
            await feed.stop()
    assert fired_utc(fake_store) == utc_minutes("2024-10-27T00:01:00", 5)
    assert sorted(emits[0].returned + emits[1].returned) == [False] * 5 + [True] * 5


@pytest.mark.parametrize(("policy", "expected_first"), [
    (CatchUp.NONE, ["00:10"]),
    (CatchUp.LATEST, ["00:09", "00:10"]),
    (CatchUp.ALL, ["00:07", "00:08", "00:09", "00:10"]),
])
async def test_catch_up_after_downtime(fake_store: FakeStore, policy: CatchUp, expected_first: list[str]) -> None:
    clock = TestClock(utc_s("2024-10-27T00:00:30"))
    params = {"cron": "* * * * *", "strict": True, "catchUp": str(policy), "catchUpMax": 3}
    await run_alarm(fake_store, clock, params, "2024-10-27T00:00:59")
    assert fake_store.events == {}
    fake_store.cursors[f"{TRIGGER}#fired"] = str(int(utc_s("2024-10-27T00:00:00") * 1000))
    clock = TestClock(utc_s("2024-10-27T00:10:30"))  # the hub was down for ten minutes
    await run_alarm(fake_store, clock, params, "2024-10-27T00:11:30", not_before="2024-10-27T00:00:30")
    assert [t[-5:] for t in fired_utc(fake_store)] == expected_first + ["00:11"]


async def test_once_fires_once_and_reports_finished(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s("2024-10-27T00:00:00"))
    finished: list[str] = []
    await run_alarm(fake_store, clock, {"date": "2024-10-27T00:05:00Z", "trigger_payload": {"k": 1}},
                    "2024-10-27T01:00:00", kind=AlarmKind.ONCE, finished=finished)
    assert [(e.id, e.data) for e in fake_store.events.values()] == [
        (f"alarm:{TRIGGER}:{int(utc_s('2024-10-27T00:05:00') * 1000)}", {"k": 1})]
    assert finished == ["fired once"]


async def test_interval_with_stop_date(fake_store: FakeStore) -> None:
    clock = TestClock(utc_s("2024-10-27T00:00:00"))
    finished: list[str] = []
    params = {"minutes": 15, "startDate": "2024-10-27T00:10:00Z", "stopDate": "2024-10-27T01:00:00Z"}
    await run_alarm(fake_store, clock, params, "2024-10-27T03:00:00", kind=AlarmKind.INTERVAL, finished=finished)
    assert fired_utc(fake_store) == ["10-27T00:10", "10-27T00:25", "10-27T00:40", "10-27T00:55"]
    assert finished == ["stopDate reached"]


def test_non_strict_five_field_cron_gets_a_stable_offset() -> None:
    config = parse_alarm_config(AlarmKind.ALARM, TRIGGER, {"cron": "0 * * * *"}, NOW_MS)
    rows = preview(config, next=2, now_ms=NOW_MS)
    offset_s = config.offset_ms() // 1000
    assert 0 <= offset_s < 60
    assert [r.utc for r in rows] == [f"2024-10-26T12:00:{offset_s:02d}.000Z", f"2024-10-26T13:00:{offset_s:02d}.000Z"]


def test_preview_calls_out_the_dst_change() -> None:
    config = parse_alarm_config(AlarmKind.ALARM, TRIGGER,
                                {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "strict": True}, NOW_MS)
    rows = preview(config, next=3, now_ms=NOW_MS)
    assert [(r.local, r.note) for r in rows] == [
        ("2024-10-27T02:00:00+02:00", ""),
        ("2024-10-28T02:00:00+01:00", "UTC offset changes +02:00 -> +01:00"),
        ("2024-10-29T02:00:00+01:00", ""),
    ]
