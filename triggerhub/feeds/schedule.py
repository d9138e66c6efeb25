"""Pure schedule arithmetic for the alarm feeds: cron (wall-clock, IANA zone), interval, once.

All instants are epoch milliseconds (UTC). DST policy of cron schedules, stated once here:
a cron pattern names *local wall-clock times*; each matching wall time fires at most once.
- spring forward: a wall time that does not exist that day (e.g. 02:30 in Europe/Berlin on the
  last Sunday of March) is skipped, it does not fire at 03:30;
- fall back: a wall time that occurs twice fires once, at its first occurrence (the earlier,
  summer-time instant); the repeated hour of `*/1` is therefore silent on its second pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import croniter

_SCAN_LIMIT = 20_000  # candidates looked at per query; protects against patterns like "0 0 31 2 *"
_MAX_DST_SHIFT = timedelta(hours=3)


class Schedule(Protocol):
    def next_after(self, ms: int) -> int | None:
        """The first instant strictly after `ms`, or None when the schedule has ended."""

    def prev_at_or_before(self, ms: int) -> int | None:
        """The last instant at or before `ms`, or None when there is none."""


@dataclass(frozen=True, slots=True)
class Window:
    """Instants outside [start_ms, stop_ms] are not part of a schedule."""

    start_ms: int | None = None
    stop_ms: int | None = None

    def clip_next(self, ms: int) -> int:
        return ms if self.start_ms is None else max(ms, self.start_ms - 1)

    def clip_prev(self, ms: int) -> int:
        return ms if self.stop_ms is None else min(ms, self.stop_ms)

    def contains(self, instant: int | None) -> bool:
        if instant is None:
            return False
        return (self.start_ms is None or instant >= self.start_ms) and (
            self.stop_ms is None or instant <= self.stop_ms)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """`cron` has 5 fields, or 6 with seconds first (node-cron order, as OpenWhisk alarms)."""

    cron: str
    zone: ZoneInfo
    window: Window = Window()
    offset_ms: int = 0  # the non-strict spread: every instant is shifted by this much

    def next_after(self, ms: int) -> int | None:
        after = self.window.clip_next(ms) - self.offset_ms
        wall = _wall(after, self.zone)
        it = croniter(self.cron, wall, second_at_beginning=True)
        for _ in range(_SCAN_LIMIT):
            instant = _instant(it.get_next(datetime), self.zone)
            if instant is not None and instant > after:
                found = instant + self.offset_ms
                return found if self.window.contains(found) else None
        return None

    def prev_at_or_before(self, ms: int) -> int | None:
        upto = self.window.clip_prev(ms) - self.offset_ms
        # Wall times later than wall(upto) can map to instants before it during a fall-back
        # hour, so the backward walk starts a safe margin later and filters by instant.
        wall = _wall(upto, self.zone) + _MAX_DST_SHIFT
        it = croniter(self.cron, wall, second_at_beginning=True)
        for _ in range(_SCAN_LIMIT):
            instant = _instant(it.get_prev(datetime), self.zone)
            if instant is not None and instant <= upto:
                found = instant + self.offset_ms
                return found if self.window.contains(found) else None
        return None


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Every `period_ms`, the first at `window.start_ms` (required)."""

    period_ms: int
    window: Window

    def _start(self) -> int:
        if self.window.start_ms is None:
            raise ValueError("an interval schedule needs a start")
        return self.window.start_ms

    def next_after(self, ms: int) -> int | None:
        start = self._start()
        found = start if ms < start else start + ((ms - start) // self.period_ms + 1) * self.period_ms
        return found if self.window.contains(found) else None

    def prev_at_or_before(self, ms: int) -> int | None:
        start = self._start()
        upto = self.window.clip_prev(ms)
        if upto < start:
            return None
        return start + ((upto - start) // self.period_ms) * self.period_ms


@dataclass(frozen=True, slots=True)
class OnceSchedule:
    date_ms: int

    def next_after(self, ms: int) -> int | None:
        return self.date_ms if self.date_ms > ms else None

    def prev_at_or_before(self, ms: int) -> int | None:
        return self.date_ms if self.date_ms <= ms else None


def instants_between(schedule: Schedule, after_ms: int, upto_ms: int, limit: int) -> list[int]:
    """Up to `limit` instants in (after_ms, upto_ms], oldest first."""
    found: list[int] = []
    cursor = after_ms
    while len(found) < limit and (nxt := schedule.next_after(cursor)) is not None and nxt <= upto_ms:
        found.append(nxt)
        cursor = nxt
    return found


def latest_between(schedule: Schedule, after_ms: int, upto_ms: int, limit: int) -> list[int]:
    """The newest `limit` instants in (after_ms, upto_ms], oldest first (walks backwards)."""
    found: list[int] = []
    cursor = upto_ms
    while len(found) < limit and (prev := schedule.prev_at_or_before(cursor)) is not None and prev > after_ms:
        found.append(prev)
        cursor = prev - 1
    return list(reversed(found))


def _wall(ms: int, zone: ZoneInfo) -> datetime:
    """The naive local wall time at `ms` (fold dropped: croniter works on wall times)."""
    return datetime.fromtimestamp(ms / 1000, zone).replace(tzinfo=None, fold=0)


def _instant(wall: datetime, zone: ZoneInfo) -> int | None:
    """The first real instant showing `wall`, or None if that wall time does not exist."""
    aware = wall.replace(tzinfo=zone, fold=0)
    utc = aware.astimezone(timezone.utc)
    if utc.astimezone(zone).replace(tzinfo=None, fold=0) != wall:
        return None  # skipped by a spring-forward transition
    return round(utc.timestamp() * 1000)
