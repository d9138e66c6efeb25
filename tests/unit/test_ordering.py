"""The bus key of a fired event: its id by default (spread, no order), or the trigger and the value
at the trigger's `ordering-key` path (events of one value in one partition, matched in order)."""

from __future__ import annotations

import pytest

from triggerhub.engine.ordering import check_ordering_key, partition_key
from triggerhub.errors import BadRequest
from triggerhub.model import FullyQualifiedName, Parameter, TriggerEvent

TRIGGER = FullyQualifiedName("guest", "readings")


def fired(data: object, event_id: str = "e1") -> TriggerEvent:
    return TriggerEvent(id=event_id, source="/api", type="fire", trigger=TRIGGER, data=data)


def ordered_by(path: object) -> tuple[Parameter, ...]:
    return (Parameter("ordering-key", path),)


def test_without_the_annotation_each_event_is_keyed_by_its_id() -> None:
    assert partition_key((), fired({"device": "a"}, "e1")) == "e1"
    assert partition_key((Parameter("feed", "/whisk.system/alarms/alarm"),), fired({}, "e2")) == "e2"


def test_a_trigger_feeding_derived_triggers_keeps_its_events_in_order_unless_it_names_a_key() -> None:
    assert partition_key((), fired({"device": "a"}, "e1"), in_order=True) == "/guest/readings"
    assert partition_key(ordered_by("device"), fired({"device": "a"}, "e1"), in_order=True) == '/guest/readings#"a"'


def test_events_are_keyed_by_the_trigger_and_the_value_at_the_path() -> None:
    assert partition_key(ordered_by("device"), fired({"device": "a", "t": 1}, "e1")) == '/guest/readings#"a"'
    assert partition_key(ordered_by("device"), fired({"device": "a", "t": 2}, "e2")) == '/guest/readings#"a"'
    assert partition_key(ordered_by("$.reading.sensor"), fired({"reading": {"sensor": 7}})) == "/guest/readings#7"
    assert partition_key(ordered_by("site"), fired({"site": {"b": 1, "a": 2}})) == '/guest/readings#{"a":2,"b":1}'


def test_events_without_the_field_share_one_key_of_the_trigger() -> None:
    assert partition_key(ordered_by("device"), fired({"other": 1})) == "/guest/readings#"
    assert partition_key(ordered_by("reading.sensor"), fired({"reading": 5})) == "/guest/readings#"
    assert partition_key(ordered_by("device"), fired(None)) == "/guest/readings#"


@pytest.mark.parametrize("path", ["", "a..b", ".a", 5, ["device"], "a." + ".".join("x" * 16)])
def test_an_ordering_key_that_is_not_a_dotted_path_is_refused(path: object) -> None:
    with pytest.raises(BadRequest) as refused:
        check_ordering_key(ordered_by(path))
    shown = __import__("json").dumps(path)
    assert refused.value.message == (
        f"annotation 'ordering-key' is {shown}; give a dotted path of a field in the fired payload, such as "
        "\"device\" or \"reading.sensor\" (at most 16 names), or remove it to let the trigger's events run in any order")


def test_a_dotted_path_or_no_annotation_is_accepted() -> None:
    check_ordering_key(())
    check_ordering_key(ordered_by("device"))
    check_ordering_key(ordered_by("$.reading.sensor"))
