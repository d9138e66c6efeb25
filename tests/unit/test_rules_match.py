"""Rule matching is pure and idempotent per event (ids derive from the event id)."""

from __future__ import annotations

import json

from triggerhub.model import FullyQualifiedName, ReducedRule, RuleStatus, Trigger, TriggerEvent
from triggerhub.rules.match import event_payload, match, outcome_line, trigger_activation_id, trigger_record

ECHO = FullyQualifiedName("guest", "echo")
TRIGGER = Trigger("guest", "t", rules={
    "guest/on": ReducedRule(ECHO, RuleStatus.ACTIVE),
    "guest/off": ReducedRule(FullyQualifiedName("guest", "other"), RuleStatus.INACTIVE),
})


def event(event_id: str, data: object = None) -> TriggerEvent:
    return TriggerEvent(event_id, "mqtt://broker", "triggerhub.mqtt.message", TRIGGER.fqn, data, time_ms=1_700_000_000_000)


def test_only_active_rules_match_and_ids_repeat_for_a_redelivered_event():
    first, again, other = match(TRIGGER, event("mqtt:c:0:7:abc")), match(TRIGGER, event("mqtt:c:0:7:abc")), \
        match(TRIGGER, event("mqtt:c:0:8:abc"))
    assert [(m.rule, m.action) for m in first] == [("guest/on", ECHO)]
    assert first == again and first[0].activation_id != other[0].activation_id
    assert len(first[0].activation_id) == 32


def test_trigger_record_and_outcome_lines():
    fired = event("mqtt:c:0:7:abc", 21.5)
    found = match(TRIGGER, fired)[0]
    ok, failed = outcome_line(found), outcome_line(found, error="Too many requests", status_code=1)
    assert json.loads(ok) == {"rule": "guest/on", "action": "guest/echo", "statusCode": 0, "success": True,
                              "activationId": found.activation_id}
    assert json.loads(failed) == {"rule": "guest/on", "action": "guest/echo", "statusCode": 1, "success": False,
                                  "error": "Too many requests"}
    record = trigger_record(TRIGGER, fired, "guest", [ok])
    assert record.activation_id == trigger_activation_id(fired) and record.end_ms == 0 and record.duration is None
    assert record.response.result == {"payload": 21.5} == event_payload(fired)
    api_fire = event("0123456789abcdef0123456789abcdef", {"x": 1})
    assert trigger_activation_id(api_fire) == "0123456789abcdef0123456789abcdef"
