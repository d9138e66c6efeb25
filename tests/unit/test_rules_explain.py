"""Explain traces: every leaf clause with its path, the value found, presence, outcome and the
clause as written; `$or` alternatives named by group; the verdict is the matcher's."""

from __future__ import annotations

from triggerhub.rules.pattern import Clause, Explanation, compile_filter

FREEZER = {"source": ["mqtt://sensors"], "data": {"temp": [{"numeric": [">", -15]}], "door": [{"exists": False}]}}


def test_a_non_matching_event_names_the_failing_clause_and_its_value():
    trace = compile_filter(FREEZER).explain({"source": "mqtt://sensors", "data": {"temp": -18.5}})
    assert trace == Explanation(matched=False, clauses=(
        Clause("$.source", "mqtt://sensors", True, True, ["mqtt://sensors"]),
        Clause("$.data.temp", -18.5, True, False, [{"numeric": [">", -15]}]),
        Clause("$.data.door", None, False, True, [{"exists": False}]),
    ))


def test_a_matching_event_and_absent_or_null_values():
    pattern = compile_filter(FREEZER)
    assert pattern.explain({"source": "mqtt://sensors", "data": {"temp": 2}}).matched is True
    absent = pattern.explain({"source": "webhook"})
    assert absent.matched is False
    assert [(c.path, c.value, c.present, c.matched) for c in absent.clauses] == [
        ("$.source", "webhook", True, False), ("$.data.temp", None, False, False), ("$.data.door", None, False, True)]
    null = compile_filter({"data": {"door": [None]}}).explain({"data": {"door": None}})
    assert null.clauses == (Clause("$.data.door", None, True, True, [None]),)
    assert null.matched is True


def test_or_clauses_carry_the_position_of_their_alternative():
    pattern = compile_filter({"type": ["reading"], "$or": [
        {"data": {"temp": [{"numeric": [">", 30]}]}},
        {"data": {"alarm": [True]}, "$or": [{"subject": [{"prefix": "lab"}]}, {"subject": ["hall"]}]},
    ]})
    trace = pattern.explain({"type": "reading", "subject": "lab-2", "data": {"temp": 20, "alarm": True}})
    assert trace.matched is True
    assert [(c.group, c.path, c.value, c.matched) for c in trace.clauses] == [
        ("", "$.type", "reading", True),
        ("$.$or[0]", "$.data.temp", 20, False),
        ("$.$or[1]", "$.data.alarm", True, True),
        ("$.$or[1].$or[0]", "$.subject", "lab-2", True),
        ("$.$or[1].$or[1]", "$.subject", "lab-2", False),
    ]
    assert pattern.explain({"type": "reading", "subject": "x", "data": {"temp": 20, "alarm": True}}).matched is False


def test_values_inside_arrays_of_objects_are_listed():
    pattern = compile_filter({"data": {"readings": {"temp": [{"numeric": [">", 30]}]}, "tags": ["hot"]}})
    trace = pattern.explain({"data": {"readings": [{"temp": 20}, {"temp": 35}, {"room": "x"}], "tags": ["cold", "hot"]}})
    assert trace.matched is True
    assert trace.clauses == (
        Clause("$.data.readings.temp", [20, 35], True, True, [{"numeric": [">", 30]}]),
        Clause("$.data.tags", ["cold", "hot"], True, True, ["hot"]),
    )
    quoted = compile_filter({"data": {"a b": ["x"]}}).explain({"data": {"a b": "y"}})
    assert quoted.clauses == (Clause("$.data['a b']", "y", True, False, ["x"]),)
