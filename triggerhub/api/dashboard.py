"""The live dashboard: the page at `/dashboard` (static files shipped in the package, no data) and
its one server-sent-event stream per page, `GET /api/v1/namespaces/{namespace}/dashboard/stream`.

The page holds no data and needs no auth; every piece of data comes through the API behind the
usual Basic auth (the page sends the key it keeps in sessionStorage). The stream reads the store,
so the embedded hub and the distributed controller serve the same thing. Each tick it sends at
most `MAX_ROWS_PER_TICK` newest records it has not sent before; once a second it sends the
second's summary: fires per trigger, activations and duration percentiles per action and per rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from triggerhub.api.context import engine_of, identity_of, namespace_of
from triggerhub.errors import FORBIDDEN, Forbidden
from triggerhub.model import Activation
from triggerhub.store.base import ActivationQuery

routes = web.RouteTableDef()
STATIC_DIR = Path(__file__).parent / "static" / "dashboard"
TICK_S = 0.2  # how often the stream looks for new records: well under the one-second display bound
SUMMARY_EVERY_TICKS = 5  # one summary a second
LOOKBACK_MS = 60_000  # records that started earlier than this are not shown as new
SCAN_LIMIT = 500  # the newest records a tick reads: up to 2,500 new records a second are counted
MAX_ROWS_PER_TICK = 50  # the newest new records a tick sends; the rest only count in the summary
SEEN_IDS = 4 * SCAN_LIMIT * SUMMARY_EVERY_TICKS
PERCENTILES = (50, 95, 99)
STOPPING = web.AppKey("dashboard_stopping", asyncio.Event)


def install(app: web.Application) -> None:
    """The routes, and an end to every open stream when the server shuts down (else the server
    would wait for them up to its shutdown timeout)."""
    app.router.add_routes(routes)
    app[STOPPING] = asyncio.Event()

    async def stop_streams(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(stop_streams)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a rule activation came from: its trigger's activation names it in its logs."""

    trigger: str
    trigger_activation: str
    rule: str


class Origins:
    """Rule activation id -> Origin, read from the trigger activations seen (the newest kept)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._by_activation: OrderedDict[str, Origin] = OrderedDict()

    def learn(self, trigger_record: Activation) -> None:
        for line in trigger_record.logs:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # not a rule's line
            if isinstance(entry, dict) and isinstance(entry.get("activationId"), str):
                self._by_activation[entry["activationId"]] = Origin(
                    trigger_record.name, trigger_record.activation_id, str(entry.get("rule", "")))
        while len(self._by_activation) > self._capacity:
            self._by_activation.popitem(last=False)

    def of(self, record: Activation) -> Origin | None:
        return self._by_activation.get(record.activation_id)


@dataclass(slots=True)
class SecondSummary:
    """What one second of new records adds up to; `capped` when a tick read a full page."""

    triggers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    actions: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    rules: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    capped: bool = False

    def add(self, record: Activation, origin: Origin | None) -> None:
        if is_trigger_activation(record):
            self.triggers[record.name] += 1
            return
        duration_ms = record.duration or 0
        self.actions[record.name].append(duration_ms)
        if origin is not None:
            self.rules[origin.rule].append(duration_ms)

    def to_json(self, second_ms: int) -> dict[str, Any]:
        return {"t": second_ms, "capped": self.capped, "triggers": dict(self.triggers),
                "actions": {name: _stats(values) for name, values in self.actions.items()},
                "rules": {name: _stats(values) for name, values in self.rules.items()}}


def is_trigger_activation(record: Activation) -> bool:
    return record.end_ms == 0  # a trigger's activation has no end


def _stats(durations_ms: list[int]) -> dict[str, int]:
    ordered = sorted(durations_ms)
    out = {"count": len(ordered)}
    for p in PERCENTILES:  # nearest rank
        out[f"p{p}"] = ordered[max(0, -(-p * len(ordered) // 100) - 1)]
    return out


def _annotation(record: Activation, key: str) -> Any:
    return next((p.value for p in record.annotations if p.key == key), None)


def row_json(record: Activation, origin: Origin | None) -> dict[str, Any]:
    """One activation as the dashboard's table shows it."""
    trigger = record.name if is_trigger_activation(record) else origin.trigger if origin else None
    return {"activationId": record.activation_id, "name": record.name, "start": record.start_ms,
            "end": record.end_ms, "duration": record.duration, "status": record.response.status_code.text,
            "statusCode": int(record.response.status_code), "cause": record.cause,
            "trigger": trigger, "triggerActivation": origin.trigger_activation if origin else None,
            "rule": origin.rule if origin else _annotation(record, "rule"), "event": _annotation(record, "event")}


class NewRecords:
    """Which records of a page were not sent before (by id, the newest `SEEN_IDS` remembered)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()

    def pick(self, records: list[Activation]) -> list[Activation]:
        fresh = [r for r in records if r.activation_id not in self._seen]
        for record in fresh:
            self._seen[record.activation_id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return fresh


@routes.get("/dashboard")
@routes.get("/dashboard/")
async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


routes.static("/dashboard/static", STATIC_DIR)


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@routes.get("/api/v1/namespaces/{namespace}/dashboard/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    identity = identity_of(request)
    namespace = namespace_of(request, identity)
    if namespace != identity.namespace:
        raise Forbidden(FORBIDDEN)
    engine = engine_of(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(_event("hello", {"namespace": namespace, "tickMs": int(TICK_S * 1000),
                                          "maxRows": MAX_ROWS_PER_TICK}))
    stopping = request.app[STOPPING]
    seen = NewRecords()
    origins = Origins(SEEN_IDS)
    summary = SecondSummary()
    ticks = 0
    try:
        while not stopping.is_set():
            now_ms = int(time.time() * 1000)
            page_ = await engine.activations(ActivationQuery(namespace=namespace, since_ms=now_ms - LOOKBACK_MS,
                                                             limit=SCAN_LIMIT))
            fresh = seen.pick(page_)
            for record in fresh:
                if is_trigger_activation(record):
                    origins.learn(record)
            if ticks:  # the first page is history: shown, not counted in a second's rates
                summary.capped |= len(page_) == SCAN_LIMIT and len(fresh) == len(page_)
                for record in fresh:
                    summary.add(record, origins.of(record))
            if fresh:
                rows = [row_json(r, origins.of(r)) for r in fresh[:MAX_ROWS_PER_TICK]]
                await response.write(_event("activations", rows))
            ticks += 1
            if ticks % SUMMARY_EVERY_TICKS == 0:
                await response.write(_event("summary", summary.to_json(now_ms)))
                summary = SecondSummary()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await stopping.wait()
    except ConnectionResetError:
        pass  # the page went away
    return response
