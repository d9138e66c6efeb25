"""W3C Trace Context (`traceparent`) for lineage: parse what a source sent, derive the rest.

`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`. An event continues the trace its source
sent (webhook header, MQTT 5 user property, CloudEvents extension) or starts one derived from its
event id, so a redelivered event gets the same context. Span ids are derived too: an event's from
its id, a rule decision's from (event id, rule), an activation's from its activation id.

A fire derives one digest: an event's trace id and span id are two parts of the same SHA-256, and
an activation's span id is the second half of its activation id (32 hex digits of a UUID) instead
of a digest of it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
SAMPLED = "01"


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero
    flags: str = SAMPLED

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self, span_id: str) -> TraceContext:
        """The context of a span under this one (same trace, same flags)."""
        return TraceContext(self.trace_id, span_id, self.flags)


def parse(value: object) -> TraceContext | None:
    """The context in a `traceparent` value, or None when it is absent or invalid (W3C: an invalid
    header is ignored and a new trace starts). Version ff is invalid; later versions may add fields."""
    if not isinstance(value, str):
        return None
    found = _TRACEPARENT.match(value.strip().lower())
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, flags)


def _nonzero(value: str) -> str:
    return value if value.strip("0") else "1".rjust(len(value), "0")


def _event_ids(event_id: str) -> tuple[str, str]:
    """An event's own trace id and span id: two parts of one digest of its id, never all zero."""
    digest = hashlib.sha256(f"trace/{event_id}".encode()).hexdigest()
    trace_id, span_id = digest[:32], digest[32:48]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:  # never seen; W3C forbids all-zero ids
        return _nonzero(trace_id), _nonzero(span_id)
    return trace_id, span_id


def derived_trace(event_id: str) -> TraceContext:
    """A new trace for an event whose source sent none; the same for the same event id. Its span
    id is `event_span_id(event_id)`: both come from one digest."""
    return TraceContext(*_event_ids(event_id))


def derived_traceparent(event_id: str) -> str:
    """`derived_trace(event_id).traceparent`, without building the context (a fire's hot path)."""
    trace_id, span_id = _event_ids(event_id)
    return f"00-{trace_id}-{span_id}-{SAMPLED}"


def event_span_id(event_id: str) -> str:
    return _event_ids(event_id)[1]


def decision_span_id(event_id: str, rule: str) -> str:
    return _nonzero(hashlib.sha256(f"rule/{event_id}/{rule}".encode()).hexdigest()[:16])


def activation_span_id(activation_id: str) -> str:
    """The second half of a 32-digit activation id (ids are UUIDs in hex, mostly derived or random
    already: no digest needed); a digest of any other id."""
    if len(activation_id) == 32:
        span_id = activation_id[16:]
        return span_id if span_id != _ZERO_SPAN else _nonzero(span_id)
    return _nonzero(hashlib.sha256(f"activation/{activation_id}".encode()).hexdigest()[:16])


def first_valid(*candidates: object) -> str | None:
    """The first candidate that is a valid traceparent, normalised; None when there is none.
    Feeds pass what their source may carry, in order (e.g. header, then CloudEvents attribute)."""
    for candidate in candidates:
        context = parse(candidate)
        if context is not None:
            return context.traceparent
    return None


def cloudevent_traceparent(value: object) -> object:
    """The `traceparent` extension attribute of a structured-mode CloudEvent, or None."""
    if isinstance(value, dict) and "specversion" in value:
        return value.get("traceparent")
    return None
