"""The store's JSON documents give back exactly the record that went in, for every record type."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from triggerhub.errors import StoreError
from triggerhub.model import (
    Action, ActionLimits, Activation, ActivationResponse, Binding, Collection, DeadLetter, Delivery, Exec,
    FullyQualifiedName,
    Invocation, Package, Parameter, ReducedRule, Rule, RuleStatus, StatusCode, Subject, Trigger, TriggerEvent,
)
from triggerhub.store import codec
from triggerhub.store.base import FeedRegistration

GUEST_HELLO = FullyQualifiedName("guest", "hello", "utils")

ACTION = Action(
    "guest/utils", "hello",
    Exec("python:3.11", "def main(a):\n    return {'ü': a}\n", binary=True, main="handler", image="my/img",
         components=("/guest/a", "/guest/b")),
    version="0.0.7", publish=True,
    parameters=(Parameter("greeting", {"text": "hi", "n": [1, 2.5, None]}, init=True), Parameter("x", 1)),
    annotations=(Parameter("web-export", True),),
    limits=ActionLimits(timeout_ms=1_000, memory_mb=128, logs_mb=5, concurrency=4),
    updated_ms=1_700_000_000_123, revision=7,
)
TRIGGER = Trigger(
    "guest", "sensor", version="0.0.3", publish=True, parameters=(Parameter("room", "lab"),),
    annotations=(Parameter("feed", "/whisk.system/alarms/alarm"),),
    rules={"guest/alert": ReducedRule(GUEST_HELLO, RuleStatus.INACTIVE, {"data": {"t": [{"numeric": [">", 1]}]}},
                                      {"t": "$.data.t"}, shadow=True),
           "guest/retried": ReducedRule(GUEST_HELLO, RuleStatus.ACTIVE, None, None, {"maxAttempts": 2},
                                        {"trigger": "/guest/alerts"}),
           "guest/log": ReducedRule(FullyQualifiedName("guest", "log"), RuleStatus.ACTIVE)},
    updated_ms=5, revision=2,
    derive={"kind": "all", "key": "$.data.k", "from": ["/guest/a", "/guest/b"], "windowS": 5},
    derived=("/guest/silent",),
)
RULE = Rule(
    "guest", "alert", trigger=FullyQualifiedName("guest", "sensor"), action=GUEST_HELLO, version="0.0.2",
    publish=True, annotations=(Parameter("note", "x"),), updated_ms=9, revision=3,
    filter={"data": {"t": [{"numeric": [">", 1]}]}}, transform={"t": "$.data.t"}, shadow=True,
    retry={"maxAttempts": 4, "on": ["timeout"]}, dead_letter={"trigger": "/guest/alerts"},
)
PACKAGE = Package(
    "guest", "utils-bound", version="0.0.4", publish=True, binding=Binding("whisk.system", "utils"),
    parameters=(Parameter("token", "t"),), annotations=(Parameter("a", 1),), updated_ms=11, revision=4,
)
ACTIVATION = Activation(
    "guest", "hello", "guest-subject", "c7bb1339cb4f40e3a6ccead6c99f804e", 1_493_327_653_767,
    1_493_327_653_769, ActivationResponse(StatusCode.APPLICATION_ERROR, {"error": "boom"}, size=17),
    logs=("2017-04-27T21:14:13.768Z       stdout: hello",),
    annotations=(Parameter("path", "guest/utils/hello"), Parameter("timeout", False)),
    version="0.0.2", publish=True, cause="0" * 32, duration_ms=42,
)
INVOCATION = Invocation(
    "d" * 32, ACTION, [{"a": 1}, "b"], "alice", "alice-subject", 1_700_000_000_000, cause="e" * 32,
    blocking=True, path_annotation="guest/utils/hello", binding="alice/utils-bound",
    init_env={"__OW_DEBUG": "1"}, transaction_id="tx-1", extra_annotations=(Parameter("causedBy", "sequence"),),
    received_ms=1_699_999_999_990,
    delivery=Delivery("alice/r", "evt-1", attempt=3, event_time_ms=1_700_000_000_001, redrive="f" * 32,
                      replay="9" * 32, first_attempt=2, failed_activation_id="8" * 32),
)
DEAD_LETTER = DeadLetter("a" * 32, "alice/r", "evt-1", "b" * 32, "timeout after 3 attempt(s)", 3, 1_700_000_000_002,
                         INVOCATION, redriven_by="7" * 32)
EVENT = TriggerEvent(
    "evt-1", "mqtt://127.0.0.1:1883/sensors/#", "triggerhub.mqtt.message", GUEST_HELLO,
    {"temperature": 21.5}, subject="sensors/lab", time_ms=1_700_000_000_001, datacontenttype="text/plain",
    traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    origin={"topic": "sensors/lab", "qos": 1, "messageId": 7},
    decisions=({"rule": "guest/alert", "action": "/guest/utils/hello", "decision": "matched",
                "activationId": "f" * 32, "spanId": "1" * 16},),
)
SUBJECT = Subject("alice", "alice-ns", "6f1b3c2e-0000-4000-8000-000000000000", "sha256:abc",
                  limits={"invocationsPerMinute": 60}, blocked=True)
FEED = FeedRegistration("/guest/sensor", "/whisk.system/alarms/alarm", "guest", {"cron": "*/5 * * * *"},
                        status="paused", reason="paused by user", created_ms=1, updated_ms=2)

CASES: list[tuple[Any, Callable[[Any], codec.Doc], Callable[[codec.Doc], Any]]] = [
    (ACTION, codec.action_to_doc, codec.action_from_doc),
    (TRIGGER, codec.trigger_to_doc, codec.trigger_from_doc),
    (RULE, codec.rule_to_doc, codec.rule_from_doc),
    (PACKAGE, codec.package_to_doc, codec.package_from_doc),
    (ACTIVATION, codec.activation_to_doc, codec.activation_from_doc),
    (INVOCATION, codec.invocation_to_doc, codec.invocation_from_doc),
    (EVENT, codec.event_to_doc, codec.event_from_doc),
    (SUBJECT, codec.subject_to_doc, codec.subject_from_doc),
    (FEED, codec.feed_to_doc, codec.feed_from_doc),
    (DEAD_LETTER, codec.dead_letter_to_doc, codec.dead_letter_from_doc),
]
IDS = [type(record).__name__ for record, _, _ in CASES]


@pytest.mark.parametrize(("record", "encode", "decode"), CASES, ids=IDS)
def test_record_survives_a_round_trip_through_json_text(record: Any, encode: Any, decode: Any) -> None:
    assert decode(codec.loads(codec.dumps(encode(record)))) == record


def test_the_callers_api_key_is_never_written() -> None:
    invocation = dataclasses.replace(INVOCATION, init_env={"__OW_API_KEY": "uuid:secret", "__OW_DEBUG": "1"})
    text = codec.dumps(codec.invocation_to_doc(invocation))
    assert "uuid:secret" not in text
    assert codec.invocation_from_doc(codec.loads(text)).init_env == {"__OW_DEBUG": "1"}


@pytest.mark.parametrize("record", [c[0] for c in CASES], ids=IDS)
def test_samples_set_every_field_away_from_its_default(record: Any) -> None:
    # Otherwise a field the codec drops would still come back equal, as its default.
    for field in dataclasses.fields(record):
        if field.default is not dataclasses.MISSING:
            assert getattr(record, field.name) != field.default, f"{type(record).__name__}.{field.name}"
        if field.default_factory is not dataclasses.MISSING:
            assert getattr(record, field.name) != field.default_factory(), f"{type(record).__name__}.{field.name}"


@pytest.mark.parametrize(("entity", "collection"), [
    (ACTION, Collection.ACTIONS), (TRIGGER, Collection.TRIGGERS),
    (RULE, Collection.RULES), (PACKAGE, Collection.PACKAGES),
])
def test_entity_round_trips_through_its_collection(entity: Any, collection: Collection) -> None:
    assert codec.entity_from_doc(collection.value, codec.loads(codec.dumps(codec.entity_to_doc(entity)))) == entity


def test_rules_stored_before_filters_decode_as_plain_rules() -> None:
    rule_doc = {k: v for k, v in codec.rule_to_doc(RULE).items() if k not in ("filter", "transform", "shadow")}
    assert codec.rule_from_doc(rule_doc) == dataclasses.replace(RULE, filter=None, transform=None, shadow=False)
    trigger_doc = codec.trigger_to_doc(TRIGGER)
    assert trigger_doc["rules"]["guest/log"] == [["guest", None, "log"], "active"]  # the pre-filter form, kept
    trigger_doc["rules"]["guest/alert"] = trigger_doc["rules"]["guest/alert"][:2]
    assert codec.trigger_from_doc(trigger_doc).rules["guest/alert"] == ReducedRule(GUEST_HELLO, RuleStatus.INACTIVE)


def test_a_filtered_rule_stored_before_shadow_rules_is_no_shadow() -> None:
    trigger_doc = codec.trigger_to_doc(TRIGGER)
    assert trigger_doc["rules"]["guest/alert"][4:] == [None, None, True]
    trigger_doc["rules"]["guest/alert"] = trigger_doc["rules"]["guest/alert"][:4]
    assert codec.trigger_from_doc(trigger_doc).rules["guest/alert"] == dataclasses.replace(
        TRIGGER.rules["guest/alert"], shadow=False)


def test_every_status_code_survives() -> None:
    for code in StatusCode:
        response = ActivationResponse(code, {"error": code.text})
        decoded = codec.response_from_doc(codec.loads(codec.dumps(codec.response_to_doc(response))))
        assert decoded == response
        assert decoded.status_code is code


def test_defaults_survive_too() -> None:
    action = Action("guest", "a", Exec("nodejs:20"))
    assert codec.action_from_doc(codec.loads(codec.dumps(codec.action_to_doc(action)))) == action
    package = Package("guest", "p")
    assert codec.package_from_doc(codec.loads(codec.dumps(codec.package_to_doc(package)))) == package


def test_stored_activation_response_uses_the_openwhisk_stored_form() -> None:
    assert codec.response_to_doc(ACTIVATION.response) == {
        "statusCode": 1, "result": {"error": "boom"}, "size": 17}


def test_text_is_compact_and_keeps_unicode() -> None:
    assert codec.dumps({"a": [1, "ü"]}) == '{"a":[1,"ü"]}'


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="stored document is a list, expected an object"):
        codec.loads("[1]")


@pytest.mark.parametrize("value", [{1, 2}, object(), ACTION, dt.datetime(2026, 12, 5)],
                         ids=["set", "object", "dataclass", "datetime"])
def test_a_value_json_cannot_carry_is_a_store_error(value: object) -> None:
    with pytest.raises(StoreError, match="cannot store a record holding a value JSON cannot carry"):
        codec.dumps({"data": value})


STANDARD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@pytest.mark.parametrize("doc", [
    codec.action_to_doc(ACTION), codec.trigger_to_doc(TRIGGER),
    {"text": "ü ✓ \u2028 \"q\" \\ /", "n": [0, -1, 2**63 - 1, -(2**63), 1.5, 1e-7, 123456.789], "t": True, "z": None},
    {"big": 2**64}, {"keys": {1: "one", 2.5: "x", None: "n", True: "t"}}, {"lone": "\ud800"},
    {"deep": json.loads("[" * 300 + "]" * 300)},
], ids=["action", "trigger", "values", "past-64-bits", "non-string-keys", "lone-surrogate", "deep"])
def test_documents_are_the_standard_encoders_text(doc: dict[str, Any]) -> None:
    """orjson writes what it can, the standard encoder the rest (big ints, non-string keys, lone
    surrogates, deep nesting): either way the stored text is what the standard encoder writes."""
    text = codec.dumps(doc)
    assert json.loads(text) == json.loads(STANDARD.encode(doc))
    if "n" not in doc:  # float digits may differ in form (1e-07 / 1e-7), never in value
        assert text == STANDARD.encode(doc)


def test_a_nan_made_in_code_is_stored_as_null_as_json_stringify_does() -> None:
    """Input cannot carry one (model.loads_json refuses NaN and infinities)."""
    assert codec.dumps({"x": float("nan"), "y": [float("inf")]}) == '{"x":null,"y":[null]}'


def test_subject_written_before_blocking_existed_is_not_blocked() -> None:
    doc = codec.subject_to_doc(SUBJECT)
    del doc["blocked"]
    assert codec.subject_from_doc(doc).blocked is False
