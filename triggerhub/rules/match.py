"""Rule matching, pure: which rules a fired event activates, with which ids, and how the
trigger's activation record reports each rule's outcome (reference 3.1). No I/O here.

Ids are derived from the event id, so matching a redelivered event again yields the same
activation ids, which the store then refuses as duplicates.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from triggerhub.model import (
    ACTIVATION_ID_RE, Activation, ActivationResponse, FullyQualifiedName, ReducedRule, RuleStatus, Trigger,
    TriggerEvent, now_ms,
)

_DERIVED_IDS = uuid.UUID("0b6a4a4e-9d1f-4d43-8a1c-5c1f3f2f7e21")


@dataclass(frozen=True, slots=True)
class Match:
    """One active rule of the fired trigger and the activation id its action will run under."""

    rule: str  # "guest/myrule"
    action: FullyQualifiedName
    activation_id: str


def match(trigger: Trigger, event: TriggerEvent) -> list[Match]:
    return [Match(key, link.action, rule_activation_id(event, key)) for key, link in active_rules(trigger).items()]


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
    return uuid.uuid5(_DERIVED_IDS, f"trigger/{event.id}").hex


def rule_activation_id(event: TriggerEvent, rule_key: str) -> str:
    return uuid.uuid5(_DERIVED_IDS, f"rule/{event.id}/{rule_key}").hex


def outcome_line(found: Match, *, error: str | None = None, status_code: int = 1) -> str:
    """One line of the trigger record's logs, as OpenWhisk writes it."""
    outcome: dict[str, Any] = {"rule": found.rule, "action": f"{found.action.path}/{found.action.name}"}
    if error is None:
        outcome.update({"statusCode": 0, "success": True, "activationId": found.activation_id})
    else:
        outcome.update({"statusCode": status_code, "success": False, "error": error})
    return json.dumps(outcome, separators=(",", ":"))


def trigger_record(trigger: Trigger, event: TriggerEvent, subject: str, outcomes: list[str]) -> Activation:
    """The trigger's activation: the raw payload as its result, no end and no duration."""
    return Activation(
        namespace=event.trigger.namespace, name=trigger.name, subject=subject,
        activation_id=trigger_activation_id(event), start_ms=event.time_ms or now_ms(), end_ms=0,
        response=ActivationResponse.ok(event_payload(event)), logs=tuple(outcomes), version=trigger.version,
    )
