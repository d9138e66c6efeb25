"""Event patterns: every operator against tables of matching and non-matching values (type
mismatches, absent fields, arrays, nulls), `$or` and nesting, and the exact validation messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from triggerhub.errors import PatternError
from triggerhub.rules.pattern import compile_filter

ABSENT = object()

# (name, leaf as written at $.data.x, values of $.data.x that match, values that do not)
OPERATOR_TABLE: list[tuple[str, list[Any], list[Any], list[Any]]] = [
    ("exact string", ["on"], ["on", ["off", "on"], [["on"]]],
     ["ON", "on ", "", None, 1, True, ABSENT, [], ["off"], {"on": 1}]),
    ("exact any of", ["a", 5, True, None], ["a", 5, 5.0, True, None, ["x", None]],
     ["b", "5", 6, 1, False, 0, ABSENT, {}]),
    ("exact number", [30], [30, 30.0, [1, 30]], ["30", 30.5, True, None, ABSENT]),
    ("exact one", [1], [1, 1.0], [True, "1", None]),
    ("exact true", [True], [True, [False, True]], [1, "true", False, None]),
    ("exact empty string", [""], ["", ["", "x"]], [None, ABSENT, "x", []]),
    ("null", [None], [None, [1, None]], [ABSENT, "null", "", 0, False, []]),
    ("prefix", [{"prefix": "lab-"}], ["lab-1", "lab-", ["x", "lab-2"]], ["Lab-1", "lab", "xlab-1", 5, None, ABSENT]),
    ("prefix ignore case", [{"prefix": {"equals-ignore-case": "LAB"}}], ["lab-1", "LAB", "Lab9"], ["la", 1, ABSENT]),
    ("suffix", [{"suffix": ".png"}], ["a.png", ".png", ["a.jpg", "b.png"]], ["a.PNG", "png", "a.png.gz", 1, None, ABSENT]),
    ("suffix ignore case", [{"suffix": {"equals-ignore-case": ".PNG"}}], ["a.png", "B.Png"], ["a.jpg", None]),
    ("equals-ignore-case", [{"equals-ignore-case": "alice"}], ["alice", "ALICE", "aLiCe"],
     ["alicia", "alice ", 1, None, ABSENT]),
    ("wildcard", [{"wildcard": "dir/*.png"}], ["dir/a.png", "dir/.png", "dir/a/b.png"],
     ["dir/a.jpg", "Dir/a.png", "xdir/a.png", 1, None, ABSENT]),
    ("wildcard literal star", [{"wildcard": "a\\*b*"}], ["a*b", "a*bc"], ["ab", "axb"]),
    ("wildcard literal star then any", [{"wildcard": "a\\**"}], ["a*", "a*bc"], ["a", "ab*"]),
    ("wildcard several", [{"wildcard": "*x*y*"}], ["xy", "axbyc", "yxy"], ["yx", "x", ""]),
    ("wildcard no star", [{"wildcard": "abc"}], ["abc"], ["abcd", "ab"]),
    ("wildcard overlap", [{"wildcard": "ab*ba"}], ["abba", "abxba"], ["aba", "ab"]),
    ("numeric >", [{"numeric": [">", 30]}], [30.5, 31, 1e9, [1, 40]], [30, 29.9, -1, "31", True, None, ABSENT, [1, 2], {}]),
    ("numeric >=", [{"numeric": [">=", 30]}], [30, 30.0, 31], [29.99, "30"]),
    ("numeric <", [{"numeric": ["<", 0]}], [-0.5, -10], [0, 0.0, 1, False, "-1"]),
    ("numeric <=", [{"numeric": ["<=", -15]}], [-15, -20.5], [-14.9, 0]),
    ("numeric =", [{"numeric": ["=", 301.8]}], [301.8, [0, 301.8]], [301.80001, "301.8", 302]),
    ("numeric range", [{"numeric": [">", 0, "<=", 5]}], [0.1, 5, 3], [0, 5.01, -1, "3", None, True, ABSENT]),
    ("numeric range upper first", [{"numeric": ["<", 10, ">=", 10 - 1]}], [9, 9.5], [10, 8.9]),
    ("exists true", [{"exists": True}], ["", 0, False, None, "x", [1]], [ABSENT, [], {}, {"a": 1}]),
    ("exists false", [{"exists": False}], [ABSENT, [], {}, {"a": 1}], ["", 0, None, [None]]),
    ("anything-but value", [{"anything-but": "init"}], ["run", "", None, 5, ["init", "run"]],
     ["init", ["init"], ABSENT, []]),
    ("anything-but number", [{"anything-but": 5}], [4, "5", True, None], [5, 5.0, ABSENT]),
    ("anything-but list", [{"anything-but": ["a", None, 1]}], ["b", 2, True, False], ["a", None, 1, 1.0, ABSENT]),
    ("anything-but prefix", [{"anything-but": {"prefix": "us-"}}], ["eu-west-1", "US-east", 5, None],
     ["us-east-1", "us-", ABSENT]),
    ("anything-but suffix", [{"anything-but": {"suffix": ".png"}}], ["a.jpg", 1], ["a.png", ABSENT]),
    ("anything-but ignore case", [{"anything-but": {"equals-ignore-case": "init"}}], ["run"], ["INIT", "init"]),
    ("anything-but wildcard", [{"anything-but": {"wildcard": "*/lib/*"}}], ["src/a.py"], ["x/lib/a.py"]),
    ("cidr v4", [{"cidr": "10.0.0.0/24"}], ["10.0.0.0", "10.0.0.255", ["1.1.1.1", "10.0.0.7"]],
     ["10.0.1.0", "10.0.0", "::1", "10.0.0.1/32", 167772161, None, ABSENT]),
    ("cidr single address", [{"cidr": "192.168.1.1"}], ["192.168.1.1"], ["192.168.1.2"]),
    ("cidr v6", [{"cidr": "2001:db8::/32"}], ["2001:db8::1"], ["2001:db9::1", "10.0.0.1"]),
    ("mixed alternatives", ["off", {"prefix": "err"}, {"numeric": [">", 100]}], ["off", "error", 101], ["on", 100, None]),
]


def document(value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"room": "lab-1"}
    if value is not ABSENT:
        data["x"] = value
    return {"source": "mqtt://sensors", "type": "reading", "data": data}


@pytest.mark.parametrize(("leaf", "value", "expected"), [
    pytest.param(leaf, value, expected, id=f"{name}-{'match' if expected else 'no'}-{value!r}"[:80])
    for name, leaf, matching, other in OPERATOR_TABLE
    for values, expected in ((matching, True), (other, False))
    for value in values
])
def test_operator_table(leaf: list[Any], value: Any, expected: bool):
    assert compile_filter({"data": {"x": leaf}}).matches(document(value)) is expected


def test_fields_are_anded_and_nested_objects_follow_the_event():
    pattern = compile_filter({"source": ["mqtt://sensors"], "data": {"room": ["lab-1"], "x": [{"numeric": [">", 0]}]}})
    assert pattern.matches(document(1))
    assert not pattern.matches(document(-1))
    assert not pattern.matches({**document(1), "source": "webhook"})
    assert not pattern.matches({"source": "mqtt://sensors", "data": "lab-1"})  # data not an object: nothing inside
    assert not pattern.matches({"source": "mqtt://sensors"})


def test_or_at_top_level_and_nested():
    pattern = compile_filter({"source": ["mqtt://sensors"],
                              "$or": [{"data": {"x": [{"numeric": [">", 30]}]}}, {"type": ["alarm"]}]})
    assert pattern.matches(document(31))
    assert pattern.matches({**document(1), "type": "alarm"})
    assert not pattern.matches(document(1))
    assert not pattern.matches({**document(31), "source": "other"})
    nested = compile_filter({"data": {"$or": [{"x": ["a"]}, {"room": [{"prefix": "office"}]}]}})
    assert nested.matches(document("a")) and not nested.matches(document("b"))
    assert nested.matches({"data": {"room": "office-2"}})
    both = compile_filter({"$or": [{"type": ["a"]}, {"type": ["b"]}], "data": {"$or": [{"x": [1]}, {"x": [2]}]}})
    assert both.matches({"type": "b", "data": {"x": 2}}) and not both.matches({"type": "b", "data": {"x": 3}})


def test_arrays_of_objects_need_one_element_to_match_the_whole_sub_pattern():
    pattern = compile_filter({"data": {"readings": {"room": ["lab"], "temp": [{"numeric": [">", 30]}]}}})
    assert pattern.matches({"data": {"readings": [{"room": "hall", "temp": 40}, {"room": "lab", "temp": 31}]}})
    assert not pattern.matches({"data": {"readings": [{"room": "hall", "temp": 40}, {"room": "lab", "temp": 20}]}})
    assert pattern.matches({"data": {"readings": [[{"room": "lab", "temp": 35}]]}})  # nested arrays flatten
    assert not pattern.matches({"data": {"readings": []}})
    absent = compile_filter({"data": {"readings": {"room": [{"exists": False}]}}})
    assert absent.matches({"data": {"readings": []}}) and absent.matches({"data": {}})
    assert absent.matches({"data": {"readings": [{"temp": 1}]}})
    assert not absent.matches({"data": {"readings": [{"room": "lab"}]}})


def test_wildcards_do_not_backtrack_on_hostile_values():
    # A regular expression `.*a.*a…b` would take longer than the test timeout on this value.
    pattern = compile_filter({"data": {"x": [{"wildcard": "*a" * 12 + "*b"}]}})
    assert not pattern.matches(document("a" * 5000))
    assert pattern.matches(document("a" * 5000 + "b"))


def test_patterns_nested_too_deep_are_refused():
    deep: dict[str, Any] = {"x": [1]}
    event: dict[str, Any] = {"x": 1}
    for _ in range(32):
        deep, event = {"a": deep}, {"a": event}
    assert compile_filter(deep, top_level=None).matches(event) is True
    with pytest.raises(PatternError) as caught:
        compile_filter({"a": deep}, top_level=None)
    path = "$" + ".a" * 33
    assert (caught.value.path, caught.value.message) == (
        path, f"filter {path}: nested deeper than 32 objects and $or lists; flatten the pattern")
    ors: dict[str, Any] = {"x": [1]}
    for _ in range(33):
        ors = {"$or": [ors]}
    with pytest.raises(PatternError, match="nested deeper than 32 objects and \\$or lists"):
        compile_filter(ors, top_level=None)


def test_arrays_nested_deeper_than_the_recursion_limit_are_flattened():
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    pattern = compile_filter({"data": {"x": ["x"], "y": {"z": [{"exists": False}]}}})
    assert pattern.matches({"data": {"x": deep, "y": deep}})
    assert pattern.explain({"data": {"x": deep, "y": deep}}).matched


def test_source_is_kept_as_given():
    pattern = {"data": {"x": [1]}}
    assert compile_filter(pattern).source == pattern


ALLOWED = "allowed: prefix, suffix, equals-ignore-case, wildcard, numeric, exists, anything-but, cidr"

INVALID: list[tuple[Any, str, str]] = [
    ([], "$", "expected an object like {\"data\": {\"temp\": [{\"numeric\": [\">\", 30]}]}}, got []"),
    ("x", "$", "expected an object like {\"data\": {\"temp\": [{\"numeric\": [\">\", 30]}]}}, got 'x'"),
    ({}, "$", "an empty object tests nothing; give at least one field"),
    ({"data": {}}, "$.data", "an empty object tests nothing; give at least one field"),
    ({"data": {"temp": 30}}, "$.data.temp",
     "expected a list of values or operators, like [30] or [{\"numeric\": [\">\", 30]}], got 30"),
    ({"data": {"temp": []}}, "$.data.temp", "an empty list matches nothing; give at least one value or operator"),
    ({"data": {"temp": [[30]]}}, "$.data.temp[0]",
     "a list inside a list is not allowed; list the values directly: [\"a\", \"b\"]"),
    ({"data": {"temp": [{"gt": 30}]}}, "$.data.temp[0]", f"unknown operator 'gt'; {ALLOWED}"),
    ({"data": {"temp": [{}]}}, "$.data.temp[0]", f"an operator object has exactly one key, got 0 (none); {ALLOWED}"),
    ({"data": {"temp": [{"prefix": "a", "suffix": "b"}]}}, "$.data.temp[0]",
     f"an operator object has exactly one key, got 2 (prefix, suffix); {ALLOWED}"),
    ({"data": {"temp": [{"numeric": ["gt", 30]}]}}, "$.data.temp[0].numeric[0]",
     "expected an operator ('<', '<=', '=', '>=', '>') followed by a number, got 'gt'"),
    ({"data": {"temp": [{"numeric": [">", "30"]}]}}, "$.data.temp[0].numeric[1]", "expected a number after '>', got '30'"),
    ({"data": {"temp": [{"numeric": [">", True]}]}}, "$.data.temp[0].numeric[1]", "expected a number after '>', got true"),
    ({"data": {"temp": [{"numeric": [">", 0, "<"]}]}}, "$.data.temp[0].numeric",
     "expected [operator, number] or [lower operator, number, upper operator, number], like [\">\", 0, \"<=\", 5], "
     "got [\">\", 0, \"<\"]"),
    ({"data": {"temp": [{"numeric": 30}]}}, "$.data.temp[0].numeric",
     "expected [operator, number] or [lower operator, number, upper operator, number], like [\">\", 0, \"<=\", 5], got 30"),
    ({"data": {"temp": [{"numeric": [">", 0, ">", 5]}]}}, "$.data.temp[0].numeric",
     "a range is one lower bound ('>' or '>=') and one upper bound ('<' or '<='), got [\">\", 0, \">\", 5]"),
    ({"data": {"temp": [{"numeric": ["=", 0, "<", 5]}]}}, "$.data.temp[0].numeric",
     "a range is one lower bound ('>' or '>=') and one upper bound ('<' or '<='), got [\"=\", 0, \"<\", 5]"),
    ({"data": {"temp": [{"numeric": [">", 5, "<", 5]}]}}, "$.data.temp[0].numeric",
     "the range [\">\", 5, \"<\", 5] is empty; no number matches it"),
    ({"data": {"temp": [{"exists": "yes"}]}}, "$.data.temp[0].exists", "expected true or false, got 'yes'"),
    ({"a": [{"prefix": 1}]}, "$.a[0].prefix", "expected a string, got 1"),
    ({"a": [{"prefix": {"equals-ignore-case": 1}}]}, "$.a[0].prefix",
     "expected a string or {\"equals-ignore-case\": \"...\"}, got {\"equals-ignore-case\": 1}"),
    ({"a": [{"suffix": None}]}, "$.a[0].suffix", "expected a string, got null"),
    ({"a": [{"equals-ignore-case": ["x"]}]}, "$.a[0].equals-ignore-case", "expected a string, got [\"x\"]"),
    ({"a": [{"wildcard": "a**b"}]}, "$.a[0].wildcard",
     "consecutive '*' are not allowed in 'a**b'; one '*' already matches any run"),
    ({"a": [{"cidr": "10.0.0.1/24"}]}, "$.a[0].cidr", "'10.0.0.1/24' has host bits set; write the network as '10.0.0.0/24'"),
    ({"a": [{"cidr": "10.0.0.0/33"}]}, "$.a[0].cidr", "'10.0.0.0/33' is not an IPv4 or IPv6 network like '10.0.0.0/24'"),
    ({"a": [{"cidr": 10}]}, "$.a[0].cidr", "expected a network like '10.0.0.0/24', got 10"),
    ({"a": [{"anything-but": []}]}, "$.a[0].anything-but", "an empty list excludes nothing; give at least one value"),
    ({"a": [{"anything-but": ["x", {"y": 1}]}]}, "$.a[0].anything-but[1]",
     "expected a string, number, boolean or null, got {\"y\": 1}"),
    ({"a": [{"anything-but": {"numeric": [">", 1]}}]}, "$.a[0].anything-but",
     "expected a value, a list of values, or an object with one of prefix, suffix, equals-ignore-case, wildcard; "
     "got {\"numeric\": [\">\", 1]}"),
    ({"a": [{"anything-but": {"prefix": 5}}]}, "$.a[0].anything-but.prefix", "expected a string, got 5"),
    ({"$or": {"a": [1]}}, "$.$or",
     "expected a non-empty list of patterns, like [{\"a\": [1]}, {\"b\": [2]}], got {\"a\": [1]}"),
    ({"$or": []}, "$.$or", "expected a non-empty list of patterns, like [{\"a\": [1]}, {\"b\": [2]}], got []"),
    ({"$or": [{"a": [1]}, 5]}, "$.$or[1]", "expected an object pattern, got 5"),
    ({"data": {"$or": [{"a": [1]}, {"b": [{"numeric": ["<"]}]}]}}, "$.data.$or[1].b[0].numeric",
     "expected [operator, number] or [lower operator, number, upper operator, number], like [\">\", 0, \"<=\", 5], "
     "got [\"<\"]"),
    ({"$and": [{"a": [1]}]}, "$", "unknown operator '$and'; allowed at object level: $or"),
    ({"data": {"detail-type": [{"nope": 1}]}}, "$.data.detail-type[0]", f"unknown operator 'nope'; {ALLOWED}"),
    ({"data": {"a b": [{"nope": 1}]}}, "$.data['a b'][0]", f"unknown operator 'nope'; {ALLOWED}"),
]


@pytest.mark.parametrize(("pattern", "path", "message"), INVALID, ids=[path + " " + m[:30] for _, path, m in INVALID])
def test_invalid_patterns_name_the_path_and_what_is_allowed(pattern: Any, path: str, message: str):
    with pytest.raises(PatternError) as caught:
        compile_filter(pattern, top_level=None)
    assert caught.value.path == path
    assert caught.value.message == str(caught.value) == f"filter {path}: {message}"
    assert caught.value.status == 400


EVENT_FIELDS = "specversion, id, source, type, subject, time, datacontenttype, data, trigger, mqtt"


@pytest.mark.parametrize(("pattern", "path", "key"), [
    ({"temp": [{"numeric": [">", 30]}]}, "$.temp", "temp"),
    ({"source": ["x"], "$or": [{"type": ["a"]}, {"Data": {"temp": [1]}}]}, "$.$or[1].Data", "Data"),
])
def test_a_top_level_field_events_never_have_is_refused(pattern: Any, path: str, key: str):
    with pytest.raises(PatternError) as caught:
        compile_filter(pattern)
    assert (caught.value.path, caught.value.message) == (
        path, f"filter {path}: events have no top-level field '{key}'; they have {EVENT_FIELDS} "
              f"(the payload is under data: {{\"data\": {{\"{key}\": ...}}}})")
    assert compile_filter(pattern, top_level=None).source == pattern
    assert compile_filter({"trigger": ["/guest/t"], "subject": [{"exists": True}], "data": {"temp": [1]}}).matches(
        {"trigger": "/guest/t", "subject": "s", "data": {"temp": 1}})


def test_the_readme_table_examples_compile():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Filter patterns", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`{" in line]
    examples = [json.loads(re.search(r"`(\{.*?\})` \|", row).group(1)) for row in rows]  # type: ignore[union-attr]
    assert len(examples) == 11
    for example in examples:
        assert compile_filter(example).source == example
