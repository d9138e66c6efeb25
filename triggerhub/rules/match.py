"""Rule matching, pure: which rules a fired event activates, with which ids and parameters, and
how the trigger's activation record reports each rule's outcome (reference 3.1). No I/O here.

A trigger's active rules are compiled once (`compile_rules`: filters into a RuleIndex, transforms)
and routed per event (`route`). A rule without filter or transform behaves as in OpenWhisk.
Ids are derived from the event id, so matching a redelivered event again yields the same
activation ids, which the store then refuses as duplicates.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from triggerhub.errors import PatternError
from triggerhub.model import (
    ACTIVATION_ID_RE, Activation, ActivationResponse, FullyQualifiedName, Parameter, Parameters, ReducedRule,
    RuleStatus, Trigger, TriggerEvent, now_ms, uuid5_hex,
)
from triggerhub.rules.events import event_document
from triggerhub.rules.index import RuleIndex
from triggerhub.rules.pattern import Filter, compile_filter
from triggerhub.rules.retry_policy import parse_dead_letter, parse_retry
from triggerhub.rules.transform import Transform, compile_transform

_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options builds an encoder per call
_DERIVED_IDS = uuid.UUID("0b6a4a4e-9d1f-4d43-8a1c-5c1f3f2f7e21")


@dataclass(frozen=True, slots=True)
class Match:
    """One active rule of the fired trigger and the activation id its action will run under."""

    rule: str  # "guest/myrule"
    action: FullyQualifiedName
    activation_id: str
    params: dict[str, Any]  # what the action gets over the trigger's parameters
    error: str | None = None  # the rule's filter or transform failed: no activation, this reason
    annotations: Parameters = ()  # for the action's record: provenance of routed (filter/transform) rules
    shadow: bool = False  # a shadow rule: recorded in the trigger record (`shadow_line`), never run


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """A trigger's active rules, compiled once per trigger version. `broken` holds rules whose
    stored filter or transform no longer compiles: they never fire and report why."""

    source: dict[str, ReducedRule]  # the trigger's rules map these were compiled from
    links: dict[str, ReducedRule]  # its active rules
    index: RuleIndex
    filters: dict[str, Filter | None]
    transforms: dict[str, Transform]
    broken: dict[str, str]
    name: str = ""  # the trigger's "/namespace/name": what a fire labels and records, as text once
    action_texts: dict[str, str] = field(default_factory=dict)  # rule -> its action's "/namespace/name"

    @property
    def plain(self) -> bool:
        """No filter, no transform and no shadow rule: routing needs no event document (OpenWhisk's path)."""
        return (not self.transforms and not self.broken and all(f is None for f in self.filters.values())
                and not any(link.shadow for link in self.links.values()))


@dataclass(frozen=True, slots=True)
class Routing:
    matched: list[Match]
    filtered: list[str]  # active rules whose filter refused the event
    taken: list[str] = field(default_factory=list)  # active rules whose filter took it (plain rules are not here)


def compile_rules(trigger: Trigger) -> CompiledRules:
    links = active_rules(trigger)
    filters: dict[str, Filter | None] = {}
    transforms: dict[str, Transform] = {}
    broken: dict[str, str] = {}
    for key, link in links.items():
        try:
            filters[key] = None if link.filter is None else compile_filter(link.filter)
            if link.transform is not None:
                transforms[key] = compile_transform(link.transform)
        except PatternError as exc:
            filters.pop(key, None)
            broken[key] = exc.message
    return CompiledRules(trigger.rules, links, RuleIndex(filters), filters, transforms, broken, str(trigger.fqn),
                         {key: str(link.action) for key, link in links.items()})


def route(compiled: CompiledRules, event: TriggerEvent) -> Routing:
    """Which rules `event` activates, with the parameters each gives its action."""
    payload = event_payload(event)
    if compiled.plain:
        return Routing([Match(key, link.action, rule_activation_id(event, key), payload)
                        for key, link in compiled.links.items()], [])
    document = event_document(event)
    chosen = set(compiled.index.matching(document))
    matched: list[Match] = []
    filtered: list[str] = []
    taken = [key for key, link in compiled.links.items()
             if key in chosen and (compiled.filters.get(key) is not None or link.shadow)]
    for key, link in compiled.links.items():
        activation_id = rule_activation_id(event, key)
        routed = provenance(key, event) if link.filter is not None or link.transform is not None else ()
        if key in compiled.broken:
            matched.append(Match(key, link.action, activation_id, {}, compiled.broken[key]))
        elif key not in chosen:
            filtered.append(key)
        elif key in compiled.transforms:
            params, error = _transformed(compiled.transforms[key], document)
            matched.append(Match(key, link.action, activation_id, params, error, routed, shadow=link.shadow))
        else:
            matched.append(Match(key, link.action, activation_id, payload, None, routed, shadow=link.shadow))
    return Routing(matched, filtered, taken)


def _transformed(transform: Transform, document: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    try:
        return transform.apply(document), None
    except PatternError as exc:
        return {}, exc.message


def compile_routing(key: str, value: Any) -> None:
    """Check a rule's `filter` (key "filter") or `transform` as the hub compiles it (PatternError),
    or its `retry` or `deadLetter` as the hub parses them (BadRequest)."""
    if key == "filter":
        compile_filter(value)
    elif key == "retry":
        parse_retry(value)
    elif key == "deadLetter":
        parse_dead_letter(value, "_")
    else:
        compile_transform(value)


def match(trigger: Trigger, event: TriggerEvent) -> list[Match]:
    """Every rule `event` activates (compiles the trigger's rules each call: for tests and tools)."""
    return route(compile_rules(trigger), event).matched


def provenance(rule: str, event: TriggerEvent) -> Parameters:
    """Annotations on a rule's activation: which rule and which event produced its parameters."""
    return (Parameter("rule", rule), Parameter("event", event.id))


def active_rules(trigger: Trigger) -> dict[str, ReducedRule]:
    return {key: link for key, link in trigger.rules.items() if link.status is RuleStatus.ACTIVE}


def event_payload(event: TriggerEvent) -> dict[str, Any]:
    """What actions receive over the trigger's parameters: the event data as an object."""
    if isinstance(event.data, dict):
        return event.data
    return {} if event.data is None else {"payload": event.data}


def trigger_activation_id(event: TriggerEvent) -> str:
    """API fires use their event id as the trigger activation id; feed events derive one."""
    if ACTIVATION_ID_RE.match(event.id):
        return event.id
    return uuid5_hex(_DERIVED_IDS, f"trigger/{event.id}")


def rule_activation_id(event: TriggerEvent, rule_key: str) -> str:
    return uuid5_hex(_DERIVED_IDS, f"rule/{event.id}/{rule_key}")


def outcome_line(found: Match, *, error: str | None = None, status_code: int = 1) -> str:
    """One line of the trigger record's logs, as OpenWhisk writes it."""
    outcome: dict[str, Any] = {"rule": found.rule, "action": f"{found.action.path}/{found.action.name}"}
    if error is None:
        outcome.update({"statusCode": 0, "success": True, "activationId": found.activation_id})
    else:
        outcome.update({"statusCode": status_code, "success": False, "error": error})
    return _COMPACT.encode(outcome)


def shadow_line(found: Match, trigger_params: dict[str, Any]) -> str:
    """A shadow rule's line in the trigger record: what its action would have been given; no id."""
    return _COMPACT.encode({"rule": found.rule, "action": f"{found.action.path}/{found.action.name}", "statusCode": 0,
                            "success": True, "shadow": True, "params": {**trigger_params, **found.params}})


def trigger_record(trigger: Trigger, event: TriggerEvent, subject: str, outcomes: list[str], *,
                   annotations: Parameters = ()) -> Activation:
    """The trigger's activation: the raw payload as its result, no end and no duration."""
    return Activation(
        namespace=event.trigger.namespace, name=trigger.name, subject=subject,
        activation_id=trigger_activation_id(event), start_ms=event.time_ms or now_ms(), end_ms=0,
        response=ActivationResponse.ok(event_payload(event)), logs=tuple(outcomes), version=trigger.version,
        annotations=annotations,
    )
