"""Routing a fired event through a trigger's compiled rules: filters pick rules, transforms build
their parameters, explain traces a verdict; compiled once per trigger revision, counted per rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from triggerhub.engine.routing import Router
from triggerhub.model import FullyQualifiedName, Parameter, ReducedRule, RuleStatus, Trigger, TriggerEvent
from triggerhub.rules.events import event_document
from triggerhub.rules.explain import recorded_outcomes, verdict
from triggerhub.rules.match import Match, compile_rules, outcome_line, route

ALERT, LOG = FullyQualifiedName("guest", "alert"), FullyQualifiedName("guest", "log")
HOT = {"data": {"temp": [{"numeric": [">", 30]}]}}
SHAPE = {"celsius": "$.data.temp", "room": "$.data.room", "note": "{$.data.room} read {$.data.temp}"}
TRIGGER = Trigger("guest", "readings", parameters=(Parameter("site", "lab"), Parameter("room", "unknown")), rules={
    "guest/hot": ReducedRule(ALERT, RuleStatus.ACTIVE, HOT, SHAPE),
    "guest/hot-raw": ReducedRule(ALERT, RuleStatus.ACTIVE, HOT),
    "guest/all": ReducedRule(LOG, RuleStatus.ACTIVE),
    "guest/off": ReducedRule(LOG, RuleStatus.INACTIVE, HOT),
}, revision=4)


def reading(event_id: str, data: object) -> TriggerEvent:
    return TriggerEvent(event_id, "sensors", "triggerhub.test.reading", TRIGGER.fqn, data, time_ms=1_700_000_000_000)


def test_a_hot_reading_goes_to_every_matching_rule_with_its_parameters() -> None:
    event = reading("e-1", {"temp": 31.5, "room": "kitchen"})
    routing = route(compile_rules(TRIGGER), event)
    provenance = (Parameter("rule", "guest/hot"), Parameter("event", "e-1"))
    assert [(m.rule, m.params, m.error, m.annotations) for m in routing.matched] == [
        ("guest/hot", {"celsius": 31.5, "room": "kitchen", "note": "kitchen read 31.5"}, None, provenance),
        ("guest/hot-raw", {"temp": 31.5, "room": "kitchen"}, None,
         (Parameter("rule", "guest/hot-raw"), Parameter("event", "e-1"))),
        ("guest/all", {"temp": 31.5, "room": "kitchen"}, None, ()),  # a plain rule: OpenWhisk's, no annotations
    ]
    assert routing.filtered == []


def test_a_cold_reading_is_filtered_and_a_missing_path_lets_the_trigger_parameter_show() -> None:
    assert route(compile_rules(TRIGGER), reading("e-2", {"temp": 30})).filtered == ["guest/hot", "guest/hot-raw"]
    assert route(compile_rules(TRIGGER), reading("e-3", {"temp": "31"})).filtered == ["guest/hot", "guest/hot-raw"]
    hot_without_room = route(compile_rules(TRIGGER), reading("e-4", {"temp": 40})).matched[0]
    assert hot_without_room.params == {"celsius": 40, "note": " read 40"}  # merged over {"room": "unknown"}


def test_a_stored_filter_that_no_longer_compiles_reports_instead_of_firing() -> None:
    broken = Trigger("guest", "t", rules={"guest/bad": ReducedRule(ALERT, RuleStatus.ACTIVE, {"data": {"t": [{"numeric": ["gt", 1]}]}})})
    [found] = route(compile_rules(broken), reading("e-5", {"t": 2})).matched
    assert found.error == ("filter $.data.t[0].numeric[0]: expected an operator ('<', '<=', '=', '>=', '>') "
                           "followed by a number, got 'gt'")
    assert '"success":false' in outcome_line(found, error=found.error)


def test_compiled_once_per_set_of_rules_and_filter_verdicts_listed_for_counting() -> None:
    router = Router()
    first = router.compiled(TRIGGER)
    assert router.compiled(TRIGGER) is first
    assert router.compiled(replace(TRIGGER, revision=5, rules=dict(TRIGGER.rules))) is first  # read again, same rules
    # deleted and created again: revisions start over, the rules differ
    again = replace(TRIGGER, rules={"guest/all": ReducedRule(LOG, RuleStatus.ACTIVE)})
    assert router.compiled(again) is not first and list(router.compiled(again).links) == ["guest/all"]
    hot, cold = route(first, reading("e-6", {"temp": 35})), route(first, reading("e-7", {"temp": 5}))
    assert (hot.taken, hot.filtered) == (["guest/hot", "guest/hot-raw"], [])  # plain rules are not counted
    assert (cold.taken, cold.filtered) == ([], ["guest/hot", "guest/hot-raw"])


def test_an_mqtt_message_is_seen_with_its_payload_as_data() -> None:
    envelope = {"topic": "sensors/s1/temperature", "qos": 1, "retain": False, "timestamp": 5, "payload": {"temp": 33},
                "properties": {}}
    event = TriggerEvent("m-1", "mqtt://127.0.0.1:1883", "triggerhub.feed.mqtt.message", TRIGGER.fqn, envelope,
                         subject="sensors/s1/temperature")
    document = event_document(event)
    assert document["data"] == {"temp": 33}
    assert document["mqtt"] == {"topic": "sensors/s1/temperature", "qos": 1, "retain": False, "timestamp": 5,
                                "properties": {}}
    assert document["subject"] == "sensors/s1/temperature"
    [hot, raw, plain] = route(compile_rules(TRIGGER), event).matched
    assert hot.params["celsius"] == 33 and raw.params == plain.params == envelope  # actions keep the envelope


def test_verdict_names_each_clause_its_value_and_the_parameters() -> None:
    cold = reading("e-9", {"temp": 21.5, "room": "hall"})
    assert verdict(HOT, SHAPE, cold, {"site": "lab"}) == {
        "matched": False,
        "clauses": [{"path": "$.data.temp", "value": 21.5, "present": True, "matched": False,
                     "test": [{"numeric": [">", 30]}]}],
        "params": {"site": "lab", "celsius": 21.5, "room": "hall", "note": "hall read 21.5"},
    }
    assert verdict(None, None, cold, {"site": "lab"}) == {
        "matched": True, "clauses": [], "params": {"site": "lab", "temp": 21.5, "room": "hall"}}
    absent = verdict(HOT, None, reading("e-10", {"room": "hall"}), {})
    assert absent["clauses"][0] | {"test": None} == {"path": "$.data.temp", "value": None, "present": False,
                                                     "matched": False, "test": None}


def test_recorded_outcomes_are_read_back_by_rule() -> None:
    found = Match("guest/hot", ALERT, "a" * 32, {})
    logs = (outcome_line(found), outcome_line(replace(found, rule="guest/x"), error="Too many requests in the last minute"),
            "not json")
    assert recorded_outcomes(logs) == {
        "guest/hot": {"rule": "guest/hot", "action": "guest/alert", "statusCode": 0, "success": True,
                      "activationId": "a" * 32},
        "guest/x": {"rule": "guest/x", "action": "guest/alert", "statusCode": 1, "success": False,
                    "error": "Too many requests in the last minute"},
    }


@pytest.mark.parametrize(("json_path", "parts"), [
    ("$.data.temp[0].numeric", ("data", "temp", 0, "numeric")),
    ("$", ()),
    ('$["detail-type"][1]', ("detail-type", 1)),
    ("$.data.$or[1].x", ("data", "$or", 1, "x")),
])
def test_json_paths_become_yaml_paths(json_path: str, parts: tuple[object, ...]) -> None:
    from triggerhub.manifests.entities import json_path_parts

    assert json_path_parts(json_path) == parts
