"""`POST .../rules/{name}/replay`: stored events of a rule's trigger, run again through the rule as
it is now (its current filter, transform and action).

Body: `{"from": T, "to": T}` (events with from <= time <= to; T is epoch milliseconds or an
ISO-8601 time with a zone) or `{"ids": [...]}` (stored event ids), and optionally `"force": true`.
Each replayed run is an ordinary invocation, accepted with a replay mark for its (rule, event) in
one transaction (store/replays.py): an unforced replay runs an event through a rule once however
often it is asked, a forced one runs it again. The answer counts what happened to each event.
A replayed run is a delivery (the rule's retry policy applies) traced like a live run; it feeds
no derived trigger, since the event is not accepted on its trigger again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from triggerhub.errors import ApiError, BadRequest
from triggerhub.model import (
    JSON, Collection, FullyQualifiedName, Identity, Parameter, ReducedRule, Rule, RuleStatus, Trigger, TriggerEvent,
    new_activation_id, params_to_dict,
)
from triggerhub.engine.entities import Entities
from triggerhub.engine.resolve import Resolved, check_write
from triggerhub.rules import match as rules
from triggerhub.store.base import ReplayClaim, Store

PAGE_EVENTS = 500  # events read, matched and accepted together
LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_REPLAY_IDS = uuid.UUID("5d0f3c1e-2b7a-4f0e-9a61-3f4c2d8e7b90")
KEYS = ("from", "to", "ids", "force")
USAGE = ('replay needs {"from": T, "to": T} or {"ids": ["<event id>", ...]}, and optionally "force": true; '
         "T is epoch milliseconds (1764921600000) or an ISO-8601 time with a zone (2026-12-05T08:00:00Z)")

Submit = Callable[[Identity, Resolved, rules.Match, TriggerEvent, dict[str, Any], ReplayClaim], Awaitable[bool]]
"""Accept one replayed invocation of the event with its mark and hand it to the dispatcher; False
when the mark was taken before (an unforced replay of an event already replayed)."""
Resolve = Callable[[Identity, FullyQualifiedName], Awaitable[Resolved]]


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    ids: tuple[str, ...] | None  # None: the time window
    since_ms: int = 0
    upto_ms: int = 0
    force: bool = False


class Outcome(StrEnum):
    """What a replay did with one event."""

    FILTERED = "filtered"  # the rule's current filter refused it
    RUN = "run"  # accepted to run (with its replay mark)
    SKIPPED = "skipped"  # replayed through this rule before, and not forced
    FAILED = "failed"  # matched, but its transform failed or its hand-over was refused


@dataclass(frozen=True, slots=True)
class Replayed:
    event_id: str
    outcome: Outcome
    activation_id: str | None = None  # RUN
    error: str | None = None  # FAILED


MAX_ERRORS_SHOWN = 10


def replay_answer(rule: str, request: ReplayRequest, replayed: list[Replayed]) -> dict[str, JSON]:
    """The counts per outcome (`matched`: every outcome but filtered), the ids of the runs, and
    the first few errors."""
    tally = {outcome: sum(1 for r in replayed if r.outcome is outcome) for outcome in Outcome}
    out: dict[str, JSON] = {
        "rule": rule, "force": request.force, "events": len(replayed),
        "matched": len(replayed) - tally[Outcome.FILTERED], "run": tally[Outcome.RUN],
        "skipped": tally[Outcome.SKIPPED], "filtered": tally[Outcome.FILTERED], "failed": tally[Outcome.FAILED],
        "activationIds": [r.activation_id for r in replayed if r.activation_id is not None]}
    errors: list[JSON] = [f"event {r.event_id}: {r.error}" for r in replayed if r.error is not None]
    if errors:
        out["errors"] = errors[:MAX_ERRORS_SHOWN]
    return out


def parse_request(body: Any, *, max_events: int) -> ReplayRequest:
    """The replay a body asks for; BadRequest naming the offending value otherwise."""
    if not isinstance(body, dict):
        raise BadRequest(f"the replay body is not a JSON object; {USAGE}")
    unknown = sorted(set(body) - set(KEYS))
    if unknown:
        raise BadRequest(f"replay: unknown keys {', '.join(unknown)}; {USAGE}")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadRequest(f'replay "force": {_shown(force)} is not a boolean; send true or false')
    window = "from" in body or "to" in body
    if ("ids" in body) == window:
        raise BadRequest(f"replay: give either a time window or ids, not {'both' if window else 'neither'}; {USAGE}")
    if "ids" in body:
        return ReplayRequest(_ids(body["ids"], max_events), force=force)
    for key in ("from", "to"):
        if key not in body:
            raise BadRequest(f'replay: the time window has no "{key}"; {USAGE}')
    since_ms, upto_ms = parse_time(body["from"], "from"), parse_time(body["to"], "to")
    if since_ms > upto_ms:
        raise BadRequest(f'replay: "from" {_shown(body["from"])} is after "to" {_shown(body["to"])}; '
                         "give a window with from <= to")
    return ReplayRequest(None, since_ms, upto_ms, force=force)


def parse_time(value: Any, key: str) -> int:
    """Epoch milliseconds from an integer (epoch ms) or an ISO-8601 string with a zone."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= LATEST_MS:
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            raise BadRequest(f'replay "{key}": {_shown(value)} has no time zone; add Z or an offset like +01:00')
        try:
            time_ms = None if parsed is None else int(parsed.timestamp() * 1000)
        except (OverflowError, ValueError):
            time_ms = None
        if time_ms is not None and 0 <= time_ms <= LATEST_MS:
            return time_ms
    raise BadRequest(f'replay "{key}": {_shown(value)} is not a time; give an ISO-8601 time with a zone '
                     "(2026-12-05T08:00:00Z) or epoch milliseconds (1764921600000), from 1970 to 9999")


def _ids(value: Any, max_events: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f'replay "ids": {_shown(value)} is not a non-empty array of event ids (strings)')
    ids = tuple(dict.fromkeys(value))
    if len(ids) > max_events:
        raise BadRequest(f'replay "ids": {len(ids)} events is more than TRIGGERHUB_REPLAY_MAX_EVENTS={max_events}; '
                         "replay them in several requests")
    return ids


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else f"'{value}'"  # as the client sent it
    return text if len(text) <= 80 else text[:77] + "..."


def replay_activation_id(event: TriggerEvent, rule_key: str, *, force: bool) -> str:
    """Unforced: one id per (rule, event), so the mark and the record agree; forced: a new one."""
    return new_activation_id() if force else uuid.uuid5(_REPLAY_IDS, f"replay/{event.id}/{rule_key}").hex


async def replay_rule(entities: Entities, store: Store, identity: Identity, fqn: FullyQualifiedName, body: Any, *,
                      max_events: int, resolve: Resolve, submit: Submit) -> dict[str, JSON]:
    rule = await entities.get(identity, fqn, Rule)
    check_write(identity, fqn)
    await entities.check_references(identity, [(rule.trigger, Collection.TRIGGERS), (rule.action, Collection.ACTIONS)])
    request = parse_request(body, max_events=max_events)
    key = f"{fqn.path}/{fqn.name}"
    if rule.shadow:
        raise BadRequest(f"rule {key} is a shadow rule and runs nothing, so a replay would run nothing; "
                         "see what it would do with explain and an eventId, or set shadow to false first")
    resolved = await resolve(identity, rule.action)
    trigger = await entities.find(rule.trigger, Trigger)
    trigger_params = params_to_dict(trigger.parameters) if trigger is not None else {}
    # The rule as it is now, whatever its trigger's copy says (and active: a replay is asked for).
    compiled = rules.compile_rules(Trigger(rule.trigger.path, rule.trigger.name, rules={
        key: ReducedRule(rule.action, RuleStatus.ACTIVE, rule.filter, rule.transform)}))
    replayed: list[Replayed] = []
    async for page in _pages(store, identity, rule.trigger, request, max_events):
        try:
            async with asyncio.TaskGroup() as tasks:
                running = [tasks.create_task(_replay_one(event, key, compiled, request, identity, resolved,
                                                         trigger_params, submit)) for event in page]
        except ExceptionGroup as failed:  # e.g. the store went away: one error, as from a single call
            raise failed.exceptions[0] from None
        replayed += [task.result() for task in running]
    return replay_answer(key, request, replayed)


async def _replay_one(event: TriggerEvent, key: str, compiled: rules.CompiledRules, request: ReplayRequest,
                      identity: Identity, resolved: Resolved, trigger_params: dict[str, Any],
                      submit: Submit) -> Replayed:
    routing = rules.route(compiled, event)
    if not routing.matched:
        return Replayed(event.id, Outcome.FILTERED)
    [found] = routing.matched
    if found.error is not None:
        return Replayed(event.id, Outcome.FAILED, error=found.error)
    activation_id = replay_activation_id(event, key, force=request.force)
    found = replace(found, activation_id=activation_id,
                    annotations=(*rules.provenance(key, event), Parameter("replay", True)))
    claim = ReplayClaim(key, event.id, event.time_ms, activation_id, force=request.force)
    try:
        taken = await submit(identity, resolved, found, event, trigger_params, claim)
    except ApiError as exc:
        return Replayed(event.id, Outcome.FAILED, error=exc.message)
    return Replayed(event.id, Outcome.RUN, activation_id) if taken else Replayed(event.id, Outcome.SKIPPED)


async def _pages(store: Store, identity: Identity, trigger: FullyQualifiedName, request: ReplayRequest,
                 max_events: int) -> AsyncIterator[list[TriggerEvent]]:
    """The events to replay, a page at a time, oldest first; BadRequest before anything runs when
    ids are unknown or of another trigger, or the window holds too many events."""
    if request.ids is not None:
        found = {event.id: event for event in await store.get_events(request.ids)
                 if event.trigger.namespace == identity.namespace}  # another namespace's event: unknown
        unknown = [event_id for event_id in request.ids if event_id not in found]
        if unknown:
            raise BadRequest(f"replay: no stored event {_listed(unknown)} in namespace {identity.namespace}; "
                             "use ids of stored events of the rule's trigger (they may have been pruned)")
        foreign = [event_id for event_id in request.ids if found[event_id].trigger != trigger]
        if foreign:
            raise BadRequest(f"replay: event {_listed(foreign)} is not an event of trigger {trigger}, the rule's "
                             "trigger; replay it through a rule of its own trigger")
        ordered = sorted(found.values(), key=lambda e: (e.time_ms, e.id))
        for start in range(0, len(ordered), PAGE_EVENTS):
            yield ordered[start:start + PAGE_EVENTS]
        return
    total = await store.count_events(str(trigger), since_ms=request.since_ms, upto_ms=request.upto_ms)
    if total > max_events:
        raise BadRequest(f"replay: the window holds {total} events of trigger {trigger}, more than "
                         f"TRIGGERHUB_REPLAY_MAX_EVENTS={max_events}; replay a narrower window")
    after: tuple[int, str] | None = None
    while True:
        page = await store.list_events(str(trigger), since_ms=request.since_ms, upto_ms=request.upto_ms,
                                       after=after, limit=PAGE_EVENTS)
        if not page:
            return
        yield page
        after = (page[-1].time_ms, page[-1].id)


def _listed(ids: list[str]) -> str:
    shown = ", ".join(f"'{event_id}'" for event_id in ids[:5])
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
