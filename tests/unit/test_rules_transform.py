"""Transforms (exact paths keep their type, placeholders interpolate, missing paths), path syntax,
template validation, and the event document patterns and transforms see."""

from __future__ import annotations

from typing import Any

import pytest

from triggerhub.errors import PatternError
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.rules.events import event_document
from triggerhub.rules.paths import parse_path, render_path
from triggerhub.rules.transform import compile_transform

DOCUMENT: dict[str, Any] = {
    "source": "mqtt://sensors", "time": "2026-12-05T06:00:00.000Z", "detail-type": "reading",
    "data": {"temp": 31.5, "room": "lab-1", "ok": True, "none": None, "tags": ["a", "b"], "pos": {"x": 1, "y": 2},
             "a b": "spaced", "it's": "quoted"},
}


@pytest.mark.parametrize(("template", "expected"), [
    ({"temp": "$.data.temp"}, {"temp": 31.5}),
    ({"ok": "$.data.ok", "none": "$.data.none", "tags": "$.data.tags", "pos": "$.data.pos"},
     {"ok": True, "none": None, "tags": ["a", "b"], "pos": {"x": 1, "y": 2}}),
    ({"first": "$.data.tags[0]", "second": "$.data.tags[1]", "third": "$.data.tags[2]"}, {"first": "a", "second": "b"}),
    ({"kind": "$['detail-type']", "also": "$.detail-type", "spaced": "$.data['a b']", "q": "$.data['it\\'s']"},
     {"kind": "reading", "also": "reading", "spaced": "spaced", "q": "quoted"}),
    ({"text": "{$.data.room} is at {$.data.temp} C since {$.time}"},
     {"text": "lab-1 is at 31.5 C since 2026-12-05T06:00:00.000Z"}),
    ({"text": "{$.data.ok}/{$.data.none}/{$.data.tags}/{$.data.pos}"}, {"text": 'true/null/["a","b"]/{"x":1,"y":2}'}),
    ({"text": "missing: [{$.data.nope}]", "gone": "$.data.nope", "deep": "$.data.temp.x"}, {"text": "missing: []"}),
    ({"nested": {"list": ["$.source", "$.data.nope", 3, "plain {text}", {"r": "$.data.room"}]}, "n": None, "f": 1.5},
     {"nested": {"list": ["mqtt://sensors", None, 3, "plain {text}", {"r": "lab-1"}]}, "n": None, "f": 1.5}),
    ({"price": "$5.00", "all": "$"}, {"price": "$5.00", "all": DOCUMENT}),
    ({}, {}),
])
def test_apply(template: dict[str, Any], expected: dict[str, Any]):
    assert compile_transform(template).apply(DOCUMENT) == expected


def test_applied_parameters_do_not_share_the_event_document():
    params = compile_transform({"pos": "$.data.pos"}).apply(DOCUMENT)
    params["pos"]["x"] = 99
    assert DOCUMENT["data"]["pos"] == {"x": 1, "y": 2}
    assert compile_transform({"t": "$.data.temp"}).source == {"t": "$.data.temp"}


@pytest.mark.parametrize(("template", "path", "message"), [
    (["$.data"], "$", "expected an object of parameters like {\"temp\": \"$.data.temp\"}, got [\"$.data\"]"),
    ("$.data", "$", "expected an object of parameters like {\"temp\": \"$.data.temp\"}, got '$.data'"),
    ({"t": "$.data..temp"}, "$.t",
     "bad path '$.data..temp': expected a name after the '.' at character 7 (quote other keys: $['a b'])"),
    ({"a": {"b": ["x", "$.data[x]"]}}, "$.a.b[1]",
     "bad path '$.data[x]': unexpected '[' at character 7; use .name, [0] or ['name']"),
    ({"t": "at {$.data.} now"}, "$.t",
     "bad path '$.data.': expected a name after the '.' at character 7 (quote other keys: $['a b'])"),
    ({"t": "{$ data}"}, "$.t", "bad path '$ data': unexpected ' ' at character 2; use .name, [0] or ['name']"),
])
def test_bad_templates_name_the_template_position(template: Any, path: str, message: str):
    with pytest.raises(PatternError) as caught:
        compile_transform(template)
    assert (caught.value.path, caught.value.message) == (path, f"transform {path}: {message}")


def test_templates_nested_too_deep_are_refused():
    deep: Any = "$.data.temp"
    for _ in range(33):
        deep = {"a": deep}
    with pytest.raises(PatternError) as caught:
        compile_transform(deep)
    path = "$" + ".a" * 33
    assert (caught.value.path, caught.value.message) == (
        path, f"transform {path}: nested deeper than 32 levels; flatten the template")
    expected: Any = 31.5
    for _ in range(32):
        expected = {"a": expected}
    assert compile_transform(deep["a"]).apply(DOCUMENT) == expected


def test_paths_round_trip():
    assert parse_path("$") == ()
    assert parse_path("$.data.temp[3]") == ("data", "temp", 3)
    assert parse_path("$['a b'][\"c\\\"d\"].e-f") == ("a b", 'c"d', "e-f")
    for steps in [("data", "temp"), ("a b", 0, "it's", "back\\slash"), ("detail-type",)]:
        assert parse_path(render_path(steps)) == steps
    assert render_path(("data", "a b", 0)) == "$.data['a b'][0]"
    with pytest.raises(ValueError, match="a path starts with '\\$'"):
        parse_path("data.temp")


def test_event_document_holds_the_cloudevents_attributes_data_and_trigger():
    event = TriggerEvent("e-1", "mqtt://sensors", "triggerhub.mqtt.message", FullyQualifiedName("guest", "readings"),
                         {"temp": 31}, time_ms=1_764_914_400_123)
    assert event_document(event) == {
        "specversion": "1.0", "id": "e-1", "source": "mqtt://sensors", "type": "triggerhub.mqtt.message",
        "subject": "/guest/readings", "time": "2025-12-05T06:00:00.123Z", "datacontenttype": "application/json",
        "data": {"temp": 31}, "trigger": "/guest/readings",
    }
