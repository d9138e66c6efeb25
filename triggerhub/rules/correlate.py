"""Derived triggers: the pure correlation logic (`all`, `sequence`, `absence`), no I/O.

A derived trigger declares `derive` (parsed by `parse_spec`); the events of its source triggers
are grouped by a key read from each event (`$.data.deviceId`). Per (derived trigger, key) there
is one JSON state; `on_event` and `on_due` turn (spec, state, event or time) into the new state,
the time the state next needs looking at (`due_ms`) and the derived events. They are
deterministic: a derived event's id comes from the source event ids, so running a transition
twice derives the same event, which the event log then refuses as a duplicate.

Windows are in event time (`TriggerEvent.time_ms`); only the absence deadline is compared with
the clock, and the cleanup of state whose window has closed for good.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from triggerhub.model import JSON, FullyQualifiedName, is_valid_name
from triggerhub.rules.paths import MISSING, Step, lookup, parse_path, render_path

MAX_PENDING = 64
"""Unmatched events kept per key for `all`/`sequence`; the oldest go first beyond this."""
MAX_WINDOW_S = 7 * 24 * 3600
DERIVED_EVENT_TYPE = "org.triggerhub.derived"
_IDS = uuid.UUID("5b0f8a6e-1d0c-4a53-9d1e-6c0c1f1e7a14")


class DeriveKind(StrEnum):
    ALL = "all"  # one event from each source with the same key, within the window, in any order
    SEQUENCE = "sequence"  # the first source's event, then the second's, within the window
    ABSENCE = "absence"  # a key heard on the source stays silent for `forS`


class DeriveError(ValueError):
    """A `derive` body that cannot be used; the message names the bad value and what to do."""


@dataclass(frozen=True, slots=True)
class DeriveSpec:
    kind: DeriveKind
    sources: tuple[FullyQualifiedName, ...]  # absence: one; all/sequence: two, in order
    key: tuple[Step, ...]
    window_ms: int  # all/sequence: the window; absence: the silence that derives an event

    def to_json(self) -> dict[str, JSON]:
        """The normalised body, as stored and shown (sources fully qualified)."""
        out: dict[str, JSON] = {"kind": self.kind.value, "key": render_path(self.key)}
        if self.kind is DeriveKind.ABSENCE:
            out["from"] = str(self.sources[0])
            out["forS"] = _seconds(self.window_ms)
        else:
            out["from"] = [str(s) for s in self.sources]
            out["windowS"] = _seconds(self.window_ms)
        return out


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """What correlation needs of one source event."""

    id: str
    trigger: str  # "/guest/heartbeat"
    time_ms: int  # event time: windows of all/sequence
    data: JSON = None
    heard_ms: int = 0  # when this process matched it (clock): absence deadlines; events that
    # waited in a backlog (Kafka after a worker crash) must not count as silence already over


@dataclass(frozen=True, slots=True)
class Derived:
    """One derived event: its id, time and data (the payload rules on the derived trigger see)."""

    id: str
    time_ms: int
    data: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class Transition:
    state: dict[str, Any] | None  # None: the key has no state left (its row goes)
    due_ms: int | None  # when `on_due` must look at this key again; None: never by itself
    derived: tuple[Derived, ...] = ()


# ---------------------------------------------------------------------------- the declaration


def parse_spec(body: Any, namespace: str) -> DeriveSpec:
    """`{"kind": "absence", "from": "/_/heartbeat", "key": "$.data.deviceId", "forS": 120}` or
    `{"kind": "all"|"sequence", "from": ["/_/a", "/_/b"], "key": ..., "windowS": 60}`."""
    if not isinstance(body, Mapping):
        raise DeriveError(f"derive must be an object such as {{\"kind\": \"absence\", \"from\": \"/_/t\", "
                          f"\"key\": \"$.data.deviceId\", \"forS\": 120}}, not {_show(body)}")
    kinds = ", ".join(k.value for k in DeriveKind)
    try:
        kind = DeriveKind(str(body.get("kind")))
    except ValueError:
        raise DeriveError(f"derive.kind {_show(body.get('kind'))} is not a known kind; use one of {kinds}") from None
    duration = "forS" if kind is DeriveKind.ABSENCE else "windowS"
    allowed = {"kind", "from", "key", duration}
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise DeriveError(f"derive has unknown key(s) {', '.join(unknown)} for kind {kind.value}; "
                          f"the keys are {', '.join(sorted(allowed))}")
    sources = _sources(kind, body.get("from"), namespace)
    key_text = body.get("key")
    if not isinstance(key_text, str):
        raise DeriveError(f"derive.key {_show(key_text)} is not a JSON path; give one such as $.data.deviceId")
    try:
        key = parse_path(key_text)
    except ValueError as exc:
        raise DeriveError(f"derive.key {key_text!r} is not a valid path: {exc}") from None
    if not key:
        raise DeriveError("derive.key '$' is the whole event; give the path of the key such as $.data.deviceId")
    seconds = body.get(duration)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_WINDOW_S:
        raise DeriveError(f"derive.{duration} {_show(seconds)} must be a number of seconds above 0 and at most "
                          f"{MAX_WINDOW_S}")
    return DeriveSpec(kind, sources, key, round(seconds * 1000))


def _sources(kind: DeriveKind, value: Any, namespace: str) -> tuple[FullyQualifiedName, ...]:
    if kind is DeriveKind.ABSENCE:
        if not isinstance(value, str):
            raise DeriveError(f"derive.from {_show(value)} must name one trigger, as in \"/_/heartbeat\"")
        names = [value]
    else:
        if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
            raise DeriveError(f"derive.from {_show(value)} must name two triggers for kind {kind.value}, "
                              "as in [\"/_/door\", \"/_/badge\"]")
        names = value
    parsed: list[FullyQualifiedName] = []
    for name in names:
        try:
            fqn = FullyQualifiedName.parse(name, namespace)
        except ValueError:
            raise DeriveError(f"derive.from names {name!r}, which is not a trigger name; use /namespace/name "
                              "or /_/name") from None
        if fqn.package is not None:
            raise DeriveError(f"derive.from names {name!r}: triggers are never inside a package")
        if not (is_valid_name(fqn.namespace) and is_valid_name(fqn.name)):
            raise DeriveError(f"derive.from names {name!r}, which is not a trigger name; use /namespace/name "
                              "or /_/name")
        parsed.append(fqn)
    if len(set(parsed)) != len(parsed):
        raise DeriveError(f"derive.from names {str(parsed[0])!r} twice; name two different triggers")
    return tuple(parsed)


def key_of(spec: DeriveSpec, document: Any) -> str | None:
    """The correlation key of an event document (rules.events.event_document), or None when the
    path leads nowhere or to something other than a string or a number."""
    value = lookup(document, spec.key)
    if value is MISSING or isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return value if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------------- transitions


def on_event(spec: DeriveSpec, trigger: str, key: str, state: dict[str, Any] | None,
             event: SourceEvent) -> Transition:
    """A source event was accepted (once: the store applies this only to new events)."""
    state = state if _fits(spec, state) else None
    if spec.kind is DeriveKind.ABSENCE:
        return _heard(spec, state, event)
    return _correlate(spec, trigger, key, state, event)


def on_due(spec: DeriveSpec, trigger: str, key: str, state: dict[str, Any] | None, now_ms: int, *,
           listening_since_ms: int = 0) -> Transition:
    """The key's `due_ms` has passed: derive the absence, or drop state whose window has closed.

    `listening_since_ms`: when this process started hearing the sources. A key is silent only
    when nothing came for the whole duration while someone listened: after a crash or restart,
    events sent meanwhile (queued by the broker, Kafka) arrive first, so a deadline is never
    earlier than `listening_since_ms + forS`."""
    if state is None or not _fits(spec, state):
        return Transition(None, None)
    if spec.kind is DeriveKind.ABSENCE:
        return _silent(spec, trigger, key, state, now_ms, listening_since_ms)
    pending = state.get("pending", [])
    due = _cleanup_due(spec, pending)
    if due is None or due <= now_ms:
        return Transition(None, None)
    return Transition(state, due)


def _fits(spec: DeriveSpec, state: dict[str, Any] | None) -> bool:
    """Whether a stored state has this kind's shape (the trigger's kind may have been changed
    since it was written: such state is dropped, never a reason to refuse the event)."""
    if state is None:
        return False
    if spec.kind is DeriveKind.ABSENCE:
        last = state.get("last")
        return (isinstance(state.get("armed"), bool) and isinstance(state.get("heardMs"), int)
                and isinstance(last, dict) and isinstance(last.get("timeMs"), int) and "id" in last)
    pending = state.get("pending")
    return (isinstance(pending, list) and isinstance(state.get("watermarkMs"), int)
            and all(isinstance(p, dict) and isinstance(p.get("timeMs"), int) and p.get("source") in (0, 1)
                    and "id" in p for p in pending))


def _heard(spec: DeriveSpec, state: dict[str, Any] | None, event: SourceEvent) -> Transition:
    if state is not None and state["last"]["timeMs"] > event.time_ms:
        # Older than what was heard already: it says nothing about the key being alive now.
        return Transition(state, int(state["heardMs"]) + spec.window_ms if state["armed"] else None)
    heard_ms = max(event.time_ms, event.heard_ms)
    return Transition({"armed": True, "heardMs": heard_ms, "last": _event_json(event)}, heard_ms + spec.window_ms)


def _silent(spec: DeriveSpec, trigger: str, key: str, state: dict[str, Any], now_ms: int,
            listening_since_ms: int) -> Transition:
    last = state["last"]
    deadline_ms = max(int(state["heardMs"]), listening_since_ms) + spec.window_ms
    if not state["armed"]:
        return Transition(state, None)
    if deadline_ms > now_ms:
        return Transition(state, deadline_ms)
    derived = Derived(
        id=_derived_id(spec.kind, trigger, key, [str(last["id"])]), time_ms=deadline_ms,
        data={"kind": spec.kind.value, "key": key, "forS": _seconds(spec.window_ms),
              "silentSinceMs": int(last["timeMs"]), "deadlineMs": deadline_ms, "events": [last]})
    return Transition({**state, "armed": False}, None, (derived,))


def _correlate(spec: DeriveSpec, trigger: str, key: str, state: dict[str, Any] | None,
               event: SourceEvent) -> Transition:
    source = [str(s) for s in spec.sources].index(event.trigger)
    pending: list[dict[str, Any]] = list(state.get("pending", [])) if state else []
    watermark_ms = max(int(state.get("watermarkMs", event.time_ms)) if state else event.time_ms, event.time_ms)
    # Nothing older than the window before the newest event seen can match any more.
    pending = [p for p in pending if p["timeMs"] >= watermark_ms - spec.window_ms]
    if event.time_ms < watermark_ms - spec.window_ms:  # too late to match anything: dropped
        return _keep(spec, pending, watermark_ms)
    partner = _partner(spec, pending, source, event.time_ms)
    if partner is None:
        mine = {**_event_json(event), "source": source}
        pending = sorted([*pending, mine], key=lambda p: (p["timeMs"], p["id"]))[-MAX_PENDING:]
        return _keep(spec, pending, watermark_ms)
    pending.remove(partner)
    ordered = sorted([partner, {**_event_json(event), "source": source}], key=lambda p: p["source"])
    events: list[JSON] = [{k: v for k, v in p.items() if k != "source"} for p in ordered]
    derived = Derived(
        id=_derived_id(spec.kind, trigger, key, [str(p["id"]) for p in ordered]),
        time_ms=max(int(p["timeMs"]) for p in ordered),
        data={"kind": spec.kind.value, "key": key, "windowS": _seconds(spec.window_ms), "events": events})
    kept = _keep(spec, pending, watermark_ms)
    return Transition(kept.state, kept.due_ms, (derived,))


def _partner(spec: DeriveSpec, pending: list[dict[str, Any]], source: int, time_ms: int) -> dict[str, Any] | None:
    """The earliest pending event of the other source that completes a match with this one."""
    for candidate in pending:  # sorted by time
        if candidate["source"] == source:
            continue
        gap_ms = time_ms - int(candidate["timeMs"])
        if abs(gap_ms) > spec.window_ms:
            continue
        if spec.kind is DeriveKind.SEQUENCE:
            first_ms, then_ms = (time_ms, candidate["timeMs"]) if source == 0 else (candidate["timeMs"], time_ms)
            if then_ms < first_ms:
                continue
        return candidate
    return None


def _keep(spec: DeriveSpec, pending: list[dict[str, Any]], watermark_ms: int) -> Transition:
    if not pending:
        return Transition(None, None)
    return Transition({"pending": pending, "watermarkMs": watermark_ms}, _cleanup_due(spec, pending))


def _cleanup_due(spec: DeriveSpec, pending: list[dict[str, Any]]) -> int | None:
    """Two windows after the newest pending event the key's state is dropped, if nothing came."""
    if not pending:
        return None
    return max(int(p["timeMs"]) for p in pending) + 2 * spec.window_ms


def _event_json(event: SourceEvent) -> dict[str, Any]:
    return {"id": event.id, "trigger": event.trigger, "timeMs": event.time_ms, "data": event.data}


def _derived_id(kind: DeriveKind, trigger: str, key: str, source_ids: list[str]) -> str:
    return uuid.uuid5(_IDS, "/".join([kind.value, trigger, key, *source_ids])).hex


def _seconds(ms: int) -> int | float:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return "null" if value is None else repr(value)


__all__ = [
    "DERIVED_EVENT_TYPE", "MAX_PENDING", "DeriveError", "DeriveKind", "DeriveSpec", "Derived", "SourceEvent",
    "Transition", "key_of", "on_due", "on_event", "parse_spec",
]
