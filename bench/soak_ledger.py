"""The soak run's ledger: what was sent and answered, what the store recorded, and the report (bench/soak.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

EXPECTED_GRACE_S = 10.0


class Kind(StrEnum):
    FIRE = "fire"
    INVOKE = "invoke"
    HOOK = "webhook"
    MQTT = "mqtt"


# ---------------------------------------------------------------- the ledger


@dataclass
class Sent:
    kind: Kind
    namespace: str
    accepted: bool = False
    status: int | None = None  # None: no answer (connection refused, timeout, broker down)
    detail: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class Ledger:
    started: float = field(default_factory=time.monotonic)
    sent: dict[str, Sent] = field(default_factory=dict)
    disruptions: list[tuple[float, float]] = field(default_factory=list)  # (start, end) in monotonic seconds
    disrupted_since: float | None = None
    server_errors: list[tuple[float, str, int, str]] = field(default_factory=list)

    def expected(self, at: float, status: int) -> bool:
        return status == 503 and self.disrupted(at)

    def disrupted(self, at: float) -> bool:
        """Whether `at` falls in a chaos step (or within EXPECTED_GRACE_S after its end)."""
        if self.disrupted_since is not None and at >= self.disrupted_since - 1:
            return True
        return any(start - 1 <= at <= end + EXPECTED_GRACE_S for start, end in self.disruptions)


def say(ledger: Ledger, message: str) -> None:
    print(f"[{time.monotonic() - ledger.started:6.1f} s] {message}", flush=True)


# ---------------------------------------------------------------- counting


@dataclass(frozen=True, slots=True)
class Records:
    rec: Counter[str]  # soak id -> `rec` records
    fire_triggers: Counter[str]  # soak id -> `t-fire` trigger records
    unattributed: Counter[str]  # `rec` records without a soak id, by status code


def find_soak_id(value: Any) -> str | None:
    """The soak id in an action result, wherever the feed put the event's data (MQTT and webhook
    events nest the message under their own keys)."""
    if isinstance(value, dict):
        if isinstance(value.get("soak_id"), str):
            return str(value["soak_id"])
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find_soak_id(item)
            if found:
                return found
    return None


async def read_records(dsn: str) -> Records:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT name, doc FROM activations WHERE name IN ('rec', 't-fire')")
    finally:
        await connection.close()
    rec: Counter[str] = Counter()
    fire_triggers: Counter[str] = Counter()
    unattributed: Counter[str] = Counter()
    for row in rows:
        doc = json.loads(row["doc"])
        soak_id = find_soak_id((doc.get("response") or {}).get("result"))
        if row["name"] == "t-fire":
            if soak_id:
                fire_triggers[soak_id] += 1
        elif soak_id:
            rec[soak_id] += 1
        else:
            unattributed[str((doc.get("response") or {}).get("statusCode"))] += 1
    return Records(rec, fire_triggers, unattributed)


async def wait_quiescent(dsn: str, quiet_s: float, timeout_s: float, ledger: Ledger) -> float | None:
    """Seconds until no activation or event was added for `quiet_s` and no pending row is left;
    None when that did not happen within `timeout_s`."""
    start = time.monotonic()
    last_change, last = start, None
    while time.monotonic() - start < timeout_s:
        try:
            connection = await asyncpg.connect(dsn)
            try:
                counts = (await connection.fetchval("SELECT count(*) FROM activations"),
                          await connection.fetchval("SELECT count(*) FROM events"))
                pending = await connection.fetchval("SELECT count(*) FROM pending")
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError) as exc:
            say(ledger, f"quiescence check failed ({exc}); retrying")
            await asyncio.sleep(1)
            continue
        now = time.monotonic()
        if counts != last:
            last, last_change = counts, now
        elif pending == 0 and now - last_change >= quiet_s:
            return now - start
        await asyncio.sleep(0.5)
    return None


def report(ledger: Ledger, records: Records) -> dict[str, int]:
    rows: dict[tuple[str, str], Counter[str]] = {}
    for soak_id, entry in ledger.sent.items():
        row = rows.setdefault((entry.kind, entry.namespace), Counter())
        row["sent"] += 1
        count = records.rec.get(soak_id, 0)
        if entry.accepted:
            row["accepted"] += 1
            row["completed" if count else "lost"] += 1
        elif count:
            row["recorded_unacknowledged"] += 1
        if count > 1 or records.fire_triggers.get(soak_id, 0) > 1:
            row["doubled"] += 1
        if not entry.accepted:
            row["not_accepted"] += 1
    for at, soak_id, status, _ in ledger.server_errors:
        entry = ledger.sent[soak_id]
        rows[(entry.kind, entry.namespace)]["5xx_expected" if ledger.expected(at, status) else "5xx_unexpected"] += 1
    columns = ("sent", "accepted", "completed", "lost", "doubled", "not_accepted", "recorded_unacknowledged",
               "5xx_expected", "5xx_unexpected")
    print(f"{'kind':<8} {'namespace':<9} " + " ".join(f"{c:>{max(len(c), 6)}}" for c in columns))
    total: Counter[str] = Counter()
    for (kind, namespace), row in sorted(rows.items()):
        total.update(row)
        print(f"{kind:<8} {namespace:<9} " + " ".join(f"{row[c]:>{max(len(c), 6)}}" for c in columns))
    print(f"{'total':<18} " + " ".join(f"{total[c]:>{max(len(c), 6)}}" for c in columns))
    print(f"records read: {sum(records.rec.values())} `rec` with a soak id, {sum(records.fire_triggers.values())} "
          "`t-fire` trigger records with a soak id (a second record of either counts as doubled; activation ids "
          "are the table's primary key)")
    statuses = Counter(f"{e.status if e.status is not None else e.detail} "
                       f"({'in' if ledger.disrupted(e.at) else 'outside'} a chaos step)"
                       for e in ledger.sent.values() if not e.accepted)
    print(f"not accepted, by answer: {dict(sorted(statuses.items()))}")
    if records.unattributed:
        print(f"rec records without a soak id, by status code: {dict(records.unattributed)}")
    for at, soak_id, status, detail in ledger.server_errors:
        if not ledger.expected(at, status):
            print(f"unexpected {status} at {at - ledger.started:.1f} s for {soak_id}: {' '.join(detail.split())}")
    lost = [s for s, e in ledger.sent.items() if e.accepted and not records.rec.get(s)]
    if lost:
        print(f"lost (first 20): {lost[:20]}")
    doubled = [s for s in ledger.sent if records.rec.get(s, 0) > 1 or records.fire_triggers.get(s, 0) > 1]
    if doubled:
        print(f"doubled (first 20): {[(s, records.rec.get(s), records.fire_triggers.get(s)) for s in doubled[:20]]}")
    return dict(total)
