"""Alarm feeds: `alarm` (cron), `interval` (minutes) and `once` (date), as OpenWhisk's alarms.

`parse_alarm_config` validates a feed's parameters (the reference's messages) into an
AlarmConfig; `AlarmFeed` fires it through the injected Clock. The last fired instant is a cursor
stored in the same transaction as the event, and event ids are `alarm:<trigger>:<instant ms>`,
so no instant fires twice across restarts or hub processes. DST policy: see schedule.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from triggerhub.clock import Clock
from triggerhub.errors import ApiError, BadRequest
from triggerhub.feeds.cursor import CursorEmit, CursorLoader
from triggerhub.feeds.kind import BuiltinFeed, FeedContext, FeedKind, ParseContext
from triggerhub.feeds.lifecycle import FeedTask, ignore_failure
from triggerhub.feeds.schedule import (
    CronSchedule, IntervalSchedule, OnceSchedule, Schedule, Window, instants_between, latest_between,
)
from triggerhub.model import JSON, TriggerEvent

log = logging.getLogger(__name__)

INTERVAL_DEFAULT_DELAY_MS = 30_000  # an interval without startDate starts 30 s after CREATE
ON_TIME_GRACE_MS = 60_000  # an instant fired less than this late is on time, not "missed"
CURSOR_KEY = "fired"
EVENT_TYPE = "triggerhub.feed.alarm"


class AlarmKind(StrEnum):
    ALARM = "alarm"
    INTERVAL = "interval"
    ONCE = "once"


class CatchUp(StrEnum):
    """What to fire for instants missed while the hub was down."""

    NONE = "none"
    LATEST = "latest"
    ALL = "all"  # up to catch_up_max, the newest ones


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    kind: AlarmKind
    trigger: str  # "/ns/name"
    payload: dict[str, JSON] = field(default_factory=dict)
    cron: str | None = None
    timezone: str | None = None
    strict: bool = False
    minutes: int | None = None
    date_ms: int | None = None
    start_ms: int | None = None
    stop_ms: int | None = None
    delete_after_fire: str = "false"  # false | true | rules
    catch_up: CatchUp = CatchUp.LATEST
    catch_up_max: int = 10

    def schedule(self) -> Schedule:
        window = Window(self.start_ms, self.stop_ms)
        if self.kind is AlarmKind.ALARM:
            assert self.cron is not None  # guaranteed by parse_alarm_config
            zone = ZoneInfo(self.timezone or "UTC")
            return CronSchedule(self.cron, zone, window, self.offset_ms())
        if self.kind is AlarmKind.INTERVAL:
            assert self.minutes is not None
            return IntervalSchedule(self.minutes * 60_000, window)
        assert self.date_ms is not None
        return OnceSchedule(self.date_ms)

    def offset_ms(self) -> int:
        """Non-strict 5-field crons fire at a stable 0-59 s offset derived from the trigger name,
        spreading load as OpenWhisk's alarms provider does; strict ones fire on the second."""
        if self.kind is not AlarmKind.ALARM or self.strict or len((self.cron or "").split()) != 5:
            return 0
        return int.from_bytes(hashlib.sha256(self.trigger.encode()).digest()[:4], "big") % 60 * 1000

    def to_json(self) -> dict[str, JSON]:
        """The stored (and READ) form; resolved dates are kept so a restart keeps the schedule."""
        out: dict[str, JSON] = {"payload": self.payload, "catchUp": str(self.catch_up),
                                "catchUpMax": self.catch_up_max}
        if self.kind is AlarmKind.ALARM:
            out.update(cron=self.cron, timezone=self.timezone, strict=self.strict)
        elif self.kind is AlarmKind.INTERVAL:
            out["minutes"] = self.minutes
        else:
            out.update(date=_iso(self.date_ms), deleteAfterFire=self.delete_after_fire)
        if self.start_ms is not None:
            out["startDate"] = _iso(self.start_ms)
        if self.stop_ms is not None:
            out["stopDate"] = _iso(self.stop_ms)
        return out


# --------------------------------------------------------------------------- validation


def parse_alarm_config(kind: AlarmKind, trigger: str, params: Mapping[str, JSON], now_ms: int, *,
                       require_future: bool = True) -> AlarmConfig:
    """Validate feed parameters; raise BadRequest with OpenWhisk's messages.

    `require_future=False` is for re-reading a stored config at restart, when start dates have
    legitimately passed."""
    payload = _payload(params.get("trigger_payload", params.get("payload", "")))  # stored configs say payload
    catch_up, catch_up_max = _catch_up(params)
    start_ms = _date(params, "startDate")
    stop_ms = _date(params, "stopDate")
    if require_future and start_ms is not None and start_ms <= now_ms:
        raise BadRequest(f"startDate parameter '{params['startDate']}' must be sometime in the future")
    if stop_ms is not None and stop_ms <= (start_ms if start_ms is not None else now_ms) and require_future:
        raise BadRequest(f"stopDate parameter '{params['stopDate']}' must be after the startDate (or now)")
    if params.get("maxTriggers") not in (None, -1) and stop_ms is not None:
        raise BadRequest("maxTriggers is not allowed when the stopDate parameter is specified")
    common: dict[str, Any] = dict(kind=kind, trigger=trigger, payload=payload, catch_up=catch_up,
                                  catch_up_max=catch_up_max, stop_ms=stop_ms)
    if kind is AlarmKind.ALARM:
        cron = _cron(params.get("cron"))
        return AlarmConfig(cron=cron, timezone=_timezone(params.get("timezone")),
                           strict=_bool(params.get("strict", False), "strict"), start_ms=start_ms, **common)
    if kind is AlarmKind.INTERVAL:
        minutes = params.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes <= 0:
            raise BadRequest(f"the minutes parameter must be an integer greater than zero, got {minutes!r}")
        start = start_ms if start_ms is not None else now_ms + INTERVAL_DEFAULT_DELAY_MS
        return AlarmConfig(minutes=minutes, start_ms=start, **common)
    date_ms = _date(params, "date")
    if date_ms is None:
        raise BadRequest("alarms once trigger feeds must include a date parameter")
    if require_future and date_ms <= now_ms:
        raise BadRequest(f"date parameter '{params['date']}' must be sometime in the future")
    delete = str(params.get("deleteAfterFire", False)).lower()
    if delete not in ("false", "true", "rules"):
        raise BadRequest(f"deleteAfterFire parameter '{params['deleteAfterFire']}' must be one of false, true, rules")
    common.pop("stop_ms")
    return AlarmConfig(date_ms=date_ms, delete_after_fire=delete, **common)


def _payload(value: JSON) -> dict[str, JSON]:
    if isinstance(value, str):
        return {"payload": value}
    if isinstance(value, dict):
        return value
    raise BadRequest(f"trigger_payload must be a string or a JSON object, got {value!r}")


def _cron(value: JSON) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("alarms trigger feeds must include a cron parameter")
    fields = value.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(value, second_at_beginning=True):
        raise BadRequest(f"cron pattern '{value}' is not valid")
    return " ".join(fields)


def _timezone(value: JSON) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest("Invalid timezone.") from None
    return str(value)


def _date(params: Mapping[str, JSON], key: str) -> int | None:
    """Epoch milliseconds or an ISO-8601 string (naive strings are UTC)."""
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
            return round(parsed.timestamp() * 1000)
    raise BadRequest(f"{key} parameter '{value}' is not a valid date; use epoch milliseconds or ISO-8601")


def _bool(value: JSON, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise BadRequest(f"{key} parameter '{value}' must be true or false")


def _catch_up(params: Mapping[str, JSON]) -> tuple[CatchUp, int]:
    raw = params.get("catchUp", CatchUp.LATEST)
    try:
        policy = CatchUp(str(raw))
    except ValueError:
        raise BadRequest(f"catchUp parameter '{raw}' must be one of none, latest, all") from None
    limit = params.get("catchUpMax", 10)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise BadRequest(f"catchUpMax parameter '{limit}' must be an integer greater than zero")
    return policy, limit


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- preview


@dataclass(frozen=True, slots=True)
class PreviewRow:
    instant_ms: int
    utc: str
    local: str  # ISO-8601 with the zone's offset at that instant
    note: str = ""  # e.g. "UTC offset changes +01:00 -> +02:00"


def preview(config: AlarmConfig, next: int = 10, now_ms: int = 0) -> list[PreviewRow]:  # noqa: A002
    """The next `next` instants after `now_ms`, with DST transitions called out."""
    zone = ZoneInfo(config.timezone or "UTC")
    rows: list[PreviewRow] = []
    previous_offset: str | None = None
    for instant in instants_between(config.schedule(), now_ms, 2**62, next):
        local = datetime.fromtimestamp(instant / 1000, zone)
        offset = local.isoformat()[-6:]
        note = f"UTC offset changes {previous_offset} -> {offset}" if previous_offset not in (None, offset) else ""
        rows.append(PreviewRow(instant, _iso(instant) or "", local.isoformat(timespec="seconds"), note))
        previous_offset = offset
    return rows


# --------------------------------------------------------------------------- the feed

OnFinished = Callable[[str], Awaitable[None]]
"""Called once with a reason when the schedule has no more instants (once fired, stopDate)."""

OnFailed = Callable[[str], None]
"""Called once with a reason when the hub refuses an instant for good (an ApiError); the loop ends."""


class AlarmFeed:
    """Fires one AlarmConfig. Its loop task lives in the TaskGroup given at construction."""

    def __init__(self, config: AlarmConfig, *, clock: Clock, tasks: asyncio.TaskGroup,
                 load_cursor: CursorLoader, not_before_ms: int, on_finished: OnFinished,
                 on_failed: OnFailed = ignore_failure, source: str = "/whisk.system/alarms/alarm") -> None:
        self._config = config
        self._schedule = config.schedule()
        self._run_task = FeedTask("alarm", trigger=config.trigger, tasks=tasks, clock=clock, on_failed=on_failed,
                                  logger=log)
        self._clock = clock
        self._load_cursor = load_cursor
        self._not_before_ms = not_before_ms  # nothing at or before this is due (CREATE, UPDATE, UNPAUSE)
        self._on_finished = on_finished
        self._source = source

    async def start(self, emit: CursorEmit) -> None:
        if self._run_task.running:
            return
        stored = await self._load_cursor(CURSOR_KEY)
        last_ms = max(int(stored) if stored is not None else 0, self._not_before_ms)
        await self._run_task.start(self._run(emit, last_ms))

    async def stop(self) -> None:
        await self._run_task.stop()

    async def _run(self, emit: CursorEmit, last_ms: int) -> None:
        log.info("alarm %s started, last fired %s", self._config.trigger, _iso(last_ms))
        while True:
            for instant in self._due(last_ms, self._clock.now_ms()):
                try:  # a store or bus outage is retried (the cursor did not move); a refusal ends the feed
                    await self._run_task.store(f"firing {_iso(instant)}", lambda: self._fire(emit, instant))
                except ApiError as exc:
                    self._run_task.refused(exc, f"instant {_iso(instant)}")
                    return
                last_ms = instant
            nxt = self._schedule.next_after(max(last_ms, self._clock.now_ms()))
            if nxt is None:
                log.info("alarm %s has no more instants", self._config.trigger)
                await self._on_finished("fired once" if self._config.kind is AlarmKind.ONCE else "stopDate reached")
                return
            await self._clock.sleep_until(nxt / 1000)

    def _due(self, last_ms: int, now: int) -> list[int]:
        """Instants to fire now, oldest first: all on-time ones plus missed ones per catch-up."""
        on_time_from = max(last_ms, now - ON_TIME_GRACE_MS)
        on_time = instants_between(self._schedule, on_time_from, now, self._config.catch_up_max)
        if last_ms >= on_time_from or self._config.catch_up is CatchUp.NONE:
            return on_time
        limit = 1 if self._config.catch_up is CatchUp.LATEST else self._config.catch_up_max
        missed = latest_between(self._schedule, last_ms, on_time_from, limit)
        return missed + on_time

    async def _fire(self, emit: CursorEmit, instant_ms: int) -> None:
        event = TriggerEvent(
            id=f"alarm:{self._config.trigger}:{instant_ms}", source=self._source, type=EVENT_TYPE,
            trigger=self._run_task.fqn, data=dict(self._config.payload), time_ms=instant_ms,
        )
        stored = await emit(event, cursor=(CURSOR_KEY, str(instant_ms)))
        log.info("alarm %s fired instant %s%s", self._config.trigger, _iso(instant_ms),
                 "" if stored else " (already fired elsewhere)")


# --------------------------------------------------------------------------- the feed kinds


def _kind(kind: AlarmKind, catalogue: BuiltinFeed) -> FeedKind:
    def parse(params: Mapping[str, JSON], ctx: ParseContext) -> dict[str, JSON]:
        return parse_alarm_config(kind, ctx.trigger, params, ctx.now_ms, require_future=ctx.require_future).to_json()

    def build(config: Mapping[str, JSON], ctx: FeedContext) -> AlarmFeed:
        parsed = parse_alarm_config(kind, ctx.trigger, config, ctx.clock.now_ms(), require_future=False)
        return AlarmFeed(parsed, clock=ctx.clock, tasks=ctx.tasks, load_cursor=ctx.load_cursor,
                         not_before_ms=ctx.not_before_ms, on_finished=ctx.on_finished, on_failed=ctx.on_failed,
                         source=ctx.feed)

    return FeedKind(catalogue=catalogue, parse=parse, build=build)


FEED_KINDS = (
    _kind(AlarmKind.ALARM, BuiltinFeed(
        "alarms", "alarm", "Fire a trigger on a cron schedule (IANA timezone, DST-safe)",
        ("cron", "timezone", "startDate", "stopDate", "strict", "trigger_payload", "catchUp", "catchUpMax"),
        {"trigger_payload": ""})),
    _kind(AlarmKind.INTERVAL, BuiltinFeed(
        "alarms", "interval", "Fire a trigger every N minutes",
        ("minutes", "startDate", "stopDate", "trigger_payload", "catchUp", "catchUpMax"), {"trigger_payload": ""})),
    _kind(AlarmKind.ONCE, BuiltinFeed(
        "alarms", "once", "Fire a trigger once at a date", ("date", "deleteAfterFire", "trigger_payload"),
        {"trigger_payload": ""})),
)
"""alarm, interval and once: /whisk.system/alarms/{alarm,interval,once}."""
