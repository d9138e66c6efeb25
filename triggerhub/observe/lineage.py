"""Lineage: how an event's trace context reaches every decision and activation, and the chain
`GET /api/v1/namespaces/{ns}/events/{id}/lineage` returns. Pure functions; the engine does the I/O.

What is stored, on the write path's existing statements:
- the event row's document carries its own `traceparent`, `origin` (the source message, with the
  `traceparent` the source sent) and `decisions` (one per active rule), in the accepting transaction;
- every activation record descending from it carries the annotations `traceparent` (its own span)
  and `event` (the event id), a rule activation also `rule`. Lineage finds the records by key: the
  decisions name the rule activations, a sequence's logs its components; delivery attempts
  (retries and replayed runs: an `attempt` annotation) are filed under their `event` by the store
  (migration 8).
Actions see their context as `__OW_TRACEPARENT` (from the /run body's `traceparent`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from triggerhub.model import JSON, Activation, Parameter, Parameters, TriggerEvent, annotation
from triggerhub.observe.trace import (
    TraceContext, activation_span_id, decision_span_id, derived_trace, derived_traceparent, event_span_id, parse,
)

_ZERO_SPAN = "0" * 16
TRACEPARENT = "traceparent"
EVENT = "event"
RULE = "rule"
REPLAY = "replay"  # a replayed run of a stored event (engine/replay.py)
LINEAGE_VERSION = 1


class Decision(StrEnum):
    MATCHED = "matched"  # an activation was accepted for the rule
    FILTERED = "filtered"  # the rule's filter refused the event (a non-match)
    REFUSED = "refused"  # matched, but not run: blocked namespace, missing action, throttled, bad transform
    SHADOW = "shadow"  # matched by a shadow rule: recorded in the trigger's record, never run


def event_context(event: TriggerEvent) -> TraceContext:
    """The event's own context: a child of what its source sent, else a trace of its own."""
    derived = derived_trace(event.id)  # one digest: this event's own trace id and span id
    sent = parse(event.traceparent)
    if sent is None:  # the common case (a fire through the API)
        return derived
    if sent.trace_id == derived.trace_id:  # its own context already (stored, or redelivered): as it was made
        return sent
    return sent if sent.span_id == derived.span_id else sent.child(derived.span_id)


def new_event_traceparent(event_id: str) -> str:
    """The traceparent of an event made here with no source to continue (an API fire): a trace of
    its own, as `event_traceparent` would give it."""
    return derived_traceparent(event_id)


def event_traceparent(event: TriggerEvent) -> str:
    """`event_context(event).traceparent`; when the source sent none (every API fire) one digest
    and no context object."""
    if event.traceparent is None:
        return derived_traceparent(event.id)
    return event_context(event).traceparent


def stamped(event: TriggerEvent, own: str, decisions: tuple[dict[str, JSON], ...]) -> TriggerEvent:
    """`event` as stored: its own `traceparent` (`own`, from event_traceparent), its rule decisions,
    and in `origin.traceparent` what its source sent. One copy of the event, on the hot path."""
    origin, sent = event.origin, event.traceparent
    if sent is not None and sent != own and parse(sent) is not None:  # None: the common case (an API fire)
        origin = {**(origin or {}), TRACEPARENT: sent}
    # The constructor, not dataclasses.replace (half the cost per fire); tests/unit/test_lineage.py
    # fails when TriggerEvent gains a field this does not carry over.
    return TriggerEvent(event.id, event.source, event.type, event.trigger, event.data, event.subject, event.time_ms,
                        event.datacontenttype, own, origin, decisions)


def traced_event(event: TriggerEvent) -> TriggerEvent:
    """`event` carrying its own context (its decisions unchanged); applied twice, the same."""
    return stamped(event, event_traceparent(event), event.decisions)


def decision(rule: str, verdict: Decision | str, *, action: str, activation_id: str | None = None,
             reason: str | None = None) -> dict[str, JSON]:
    """One rule decision as stored in the event row (`verdict`: a Decision or its value). Its span
    id is derived from (event id, rule) when lineage is read, not stored: nothing on the hot path
    that a read can work out."""
    out: dict[str, JSON] = {"rule": rule, "action": action, "decision": str.__str__(verdict)}
    if activation_id is not None:
        out["activationId"] = activation_id
    if reason is not None:
        out["reason"] = reason
    return out


def event_parameter(event_id: str) -> Parameter:
    """The `event` annotation: one per event, shared by its trigger record and rule activations."""
    return Parameter(EVENT, event_id)


def _rule_parameter(rule: str) -> Parameter:
    """The `rule` annotation, kept per rule (a rule fires many events)."""
    found = _RULE_PARAMETERS.get(rule)
    if found is None:
        if len(_RULE_PARAMETERS) >= _MAX_KEPT:
            _RULE_PARAMETERS.clear()
        found = _RULE_PARAMETERS[rule] = Parameter(RULE, rule)
    return found


_RULE_PARAMETERS: dict[str, Parameter] = {}
_MAX_KEPT = 4096


def activation_annotations(event_traceparent: str, event: str | Parameter, activation_id: str, rule: str,
                           present: Parameters = ()) -> Parameters:
    """The annotations that file a rule activation under its event (an id, or its shared
    `event_parameter`) and its rule decision (the parent of its span), skipping keys already
    `present` (routed rules carry rule and event). `event_traceparent` is the event's own, as
    event_traceparent returns it: `00-<trace id>-<span id>-<flags>`, whose span id this replaces."""
    span_id = activation_id[16:]  # activation_span_id's common case, inline: the second half of a 32-digit id
    if len(span_id) != 16 or span_id == _ZERO_SPAN:
        span_id = activation_span_id(activation_id)
    own = Parameter(TRACEPARENT, f"{event_traceparent[:36]}{span_id}{event_traceparent[52:]}")
    filed = event if isinstance(event, Parameter) else Parameter(EVENT, event)
    if not present:  # the common case: no retry policy, so nothing to skip
        return own, filed, _rule_parameter(rule)
    keys = {p.key for p in present}
    return tuple(p for p in (own, filed, _rule_parameter(rule)) if p.key not in keys)


def event_annotations(traceparent: str, event: str | Parameter) -> Parameters:
    """For the trigger's own record: the event's span (its `traceparent`), filed under the event."""
    return Parameter(TRACEPARENT, traceparent), event if isinstance(event, Parameter) else Parameter(EVENT, event)


def invoke_annotations(activation_id: str) -> Parameters:
    """For a direct invoke (no event): a trace of its own, rooted at this activation."""
    return (Parameter(TRACEPARENT, derived_trace(f"invoke/{activation_id}").child(
        activation_span_id(activation_id)).traceparent),)


def child_annotations(parent: Parameters, child_activation_id: str) -> Parameters:
    """For a sequence component: the parent's trace and event, under a span of its own."""
    context = parse(annotation(parent, TRACEPARENT))
    event_id = annotation(parent, EVENT)
    out: list[Parameter] = []
    if context is not None:
        out.append(Parameter(TRACEPARENT, context.child(activation_span_id(child_activation_id)).traceparent))
    if isinstance(event_id, str):
        out.append(Parameter(EVENT, event_id))
    return tuple(out)


def inherited(annotations: Parameters) -> Parameters:
    """The lineage annotations among `annotations` (to carry them onto a record built elsewhere)."""
    return tuple(p for p in annotations if p.key in (TRACEPARENT, EVENT, RULE))


def parent_span_id(annotations: Parameters, cause: str | None) -> str | None:
    """The parent of a record's span, from what the record itself carries: a sequence component's
    is its sequence, a rule activation's its rule decision; None for a trace's root."""
    event_id, rule = annotation(annotations, EVENT), annotation(annotations, RULE)
    if cause is not None and annotation(annotations, "causedBy") == "sequence":
        return activation_span_id(cause)
    if isinstance(event_id, str) and isinstance(rule, str):
        return decision_span_id(event_id, rule)
    return event_span_id(event_id) if isinstance(event_id, str) else None


def traceparent_of(annotations: Parameters) -> str | None:
    value = annotation(annotations, TRACEPARENT)
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------------- the chain


def lineage_document(event: TriggerEvent, records: Sequence[Activation], *, trigger_activation_id: str,
                     api_type: str) -> dict[str, JSON]:
    """The chain of one event, as documented in api/api_docs.py (`Lineage`)."""
    context = event_context(event)
    origin = dict(event.origin or {})
    sent = parse(origin.get(TRACEPARENT))
    by_id = {r.activation_id: r for r in records}
    rules: list[JSON] = []
    for entry in event.decisions:
        item = dict(entry)
        if "spanId" not in item:  # rows stored before span ids were derived on read carry theirs
            item["spanId"] = decision_span_id(event.id, str(entry.get("rule")))
        activation_id = entry.get("activationId")
        if isinstance(activation_id, str):
            record = by_id.get(activation_id)
            item["status"] = _status(record)
        rules.append(item)
    activations: list[JSON] = [_activation(r, by_id, event, context, trigger_activation_id) for r in records]
    return {
        "lineageVersion": LINEAGE_VERSION,
        "eventId": event.id,
        "traceId": context.trace_id,
        "source": {**origin, "kind": _kind(event.type, api_type), "type": event.type, "source": event.source,
                   "parentSpanId": sent.span_id if sent is not None else None},
        "event": {"id": event.id, "trigger": str(event.trigger), "time": event.time_ms, "subject": event.subject,
                  "traceparent": context.traceparent, "spanId": context.span_id,
                  "triggerActivationId": trigger_activation_id if trigger_activation_id in by_id else None},
        "rules": rules,
        "activations": activations,
    }


def _kind(event_type: str, api_type: str) -> str:
    if event_type == api_type:
        return "api"
    prefix = "triggerhub.feed."
    return event_type[len(prefix):].split(".", 1)[0] if event_type.startswith(prefix) else "other"


def _status(record: Activation | None) -> str:
    return "pending" if record is None else record.response.status_code.text


def _activation(record: Activation, by_id: dict[str, Activation], event: TriggerEvent, context: TraceContext,
                trigger_activation_id: str) -> dict[str, JSON]:
    """Parents are the spans the parent records carry (the event's, a sequence's), so records
    stored before a span derivation changed still link up."""
    own = parse(traceparent_of(record.annotations))
    rule = annotation(record.annotations, "rule")
    rule_key = rule if isinstance(rule, str) else _rule_of(event, record.activation_id)
    if record.activation_id == trigger_activation_id:
        role, parent_span = "trigger", context.span_id
    elif record.cause is not None and record.cause in by_id:
        parent = parse(traceparent_of(by_id[record.cause].annotations))
        role, parent_span = "component", parent.span_id if parent is not None else activation_span_id(record.cause)
    else:
        role = ("replay" if annotation(record.annotations, REPLAY) is True
                else "retry" if annotation(record.annotations, "attempt") is not None else "rule")
        parent_span = decision_span_id(event.id, rule_key) if rule_key else context.span_id
    children = [r.activation_id for r in by_id.values() if r.cause == record.activation_id]
    out: dict[str, JSON] = {
        "activationId": record.activation_id, "name": record.name, "namespace": record.namespace,
        "path": annotation(record.annotations, "path"), "role": role,
        "status": record.response.status_code.text, "statusCode": int(record.response.status_code),
        "start": record.start_ms, "end": record.end_ms, "duration": record.duration, "cause": record.cause,
        "traceparent": own.traceparent if own is not None else None,
        "spanId": own.span_id if own is not None else None, "parentSpanId": parent_span,
        "children": list[JSON](children),
    }
    if rule_key is not None and role != "component":
        out["rule"] = rule_key
    for key in ("attempt", "causedBy", REPLAY):
        value = annotation(record.annotations, key)
        if value is not None:
            out[key] = value
    return out


def _rule_of(event: TriggerEvent, activation_id: str) -> str | None:
    for entry in event.decisions:
        if entry.get("activationId") == activation_id:
            rule = entry.get("rule")
            return rule if isinstance(rule, str) else None
    return None
