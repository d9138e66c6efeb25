"""RuleIndex returns what checking every rule would, in the order given; property tests compare it
(and each compiled filter) with a plain clause-by-clause evaluator of the JSON pattern."""

from __future__ import annotations

import ipaddress
import operator
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from triggerhub.rules.index import RuleIndex
from triggerhub.rules.pattern import Filter, compile_filter

ABSENT = object()


# ---- the plain evaluator: reads the JSON pattern on every call, one clause at a time ----------

def evaluate(pattern: dict[str, Any], obj: dict[str, Any]) -> bool:
    for key, sub in pattern.items():
        if key == "$or":
            if not any(evaluate(alternative, obj) for alternative in sub):
                return False
            continue
        value = obj.get(key, ABSENT)
        if isinstance(sub, dict):
            inside = objects_in(value) or [{}]
            if not any(evaluate(sub, element) for element in inside):
                return False
        elif not leaf_matches(sub, scalars_in(value)):
            return False
    return True


def objects_in(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [o for item in value if isinstance(item, (dict, list)) for o in objects_in(item)]
    return []


def scalars_in(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [s for item in value for s in scalars_in(item)]
    return [] if value is ABSENT or isinstance(value, dict) else [value]


def same(a: Any, b: Any) -> bool:
    kind = (lambda v: "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v))
    return kind(a) == kind(b) and a == b


def leaf_matches(alternatives: list[Any], values: list[Any]) -> bool:
    for alternative in alternatives:
        if isinstance(alternative, dict) and "exists" in alternative:
            if bool(values) == alternative["exists"]:
                return True
        elif any(operator_matches(alternative, value) for value in values):
            return True
    return False


def operator_matches(alternative: Any, value: Any) -> bool:
    if not isinstance(alternative, dict):
        return same(alternative, value)
    ((name, argument),) = alternative.items()
    text = value if isinstance(value, str) else None
    if name == "anything-but":
        if isinstance(argument, dict):
            return not operator_matches(argument, value)
        return not any(same(excluded, value) for excluded in (argument if isinstance(argument, list) else [argument]))
    if name == "numeric":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        checks = {"<": operator.lt, "<=": operator.le, "=": operator.eq, ">=": operator.ge, ">": operator.gt}
        return all(checks[argument[i]](value, argument[i + 1]) for i in range(0, len(argument), 2))
    if text is None:
        return False
    if name == "prefix":
        return text.startswith(argument)
    if name == "suffix":
        return text.endswith(argument)
    if name == "equals-ignore-case":
        return text.lower() == argument.lower()
    if name == "wildcard":
        pieces = [re.escape(piece.replace("\\*", "*")) for piece in re.split(r"(?<!\\)\*", argument)]
        return re.fullmatch(".*".join(pieces), text, re.DOTALL) is not None
    if name == "cidr":
        try:
            return ipaddress.ip_address(text) in ipaddress.ip_network(argument)
        except ValueError:
            return False
    raise AssertionError(name)


# ---- examples --------------------------------------------------------------------------------

def index_of(patterns: dict[str, Any]) -> RuleIndex:
    return RuleIndex({key: None if p is None else compile_filter(p, top_level=None) for key, p in patterns.items()})


def test_rules_come_back_in_the_order_given_with_unfiltered_rules_always():
    index = index_of({
        "guest/z-any": None,
        "guest/lab": {"data": {"room": ["lab-1", "lab-2"]}},
        "guest/hot": {"data": {"temp": [{"numeric": [">", 30]}]}},
        "guest/lab-hot": {"source": ["mqtt://sensors"], "data": {"room": ["lab-1"], "temp": [{"numeric": [">", 30]}]}},
        "guest/a-any": None,
    })
    assert index.matching({"source": "mqtt://sensors", "data": {"room": "lab-1", "temp": 35}}) == [
        "guest/z-any", "guest/lab", "guest/hot", "guest/lab-hot", "guest/a-any"]
    assert index.matching({"source": "mqtt://sensors", "data": {"room": "lab-2", "temp": 20}}) == [
        "guest/z-any", "guest/lab", "guest/a-any"]
    assert index.matching({"data": {"room": ["hall", "lab-1"], "temp": 31}}) == [
        "guest/z-any", "guest/lab", "guest/hot", "guest/a-any"]
    assert index.matching({}) == ["guest/z-any", "guest/a-any"]
    assert len(index) == 5 and index_of({}).matching({"a": 1}) == []


def test_types_are_kept_apart_in_the_index():
    index = index_of({"one": {"v": [1]}, "true": {"v": [True]}, "text": {"v": ["1"]}, "null": {"v": [None]}})
    assert index.matching({"v": 1}) == ["one"] and index.matching({"v": 1.0}) == ["one"]
    assert index.matching({"v": True}) == ["true"] and index.matching({"v": "1"}) == ["text"]
    assert index.matching({"v": None}) == ["null"] and index.matching({"v": [None, 1, 1, True]}) == ["one", "true", "null"]


def test_or_and_operator_only_rules_are_still_found():
    index = index_of({"either": {"$or": [{"a": ["x"]}, {"b": ["y"]}]}, "prefix": {"a": [{"prefix": "x"}]},
                      "inside": {"list": {"id": ["k"]}}})
    assert index.matching({"b": "y"}) == ["either"]
    assert index.matching({"a": "xx"}) == ["prefix"]
    assert index.matching({"list": [{"id": "j"}, {"id": "k"}]}) == ["inside"]


def test_rules_differing_only_in_their_anchor_value_share_the_rest_of_their_check():
    fleet = {f"guest/s{i}": {"source": ["mqtt"], "data": {"sensor": [f"s{i}"], "temp": [{"numeric": [">", 30]}]}}
             for i in range(50)}
    index = index_of({**fleet, "guest/array": {"data": {"r": {"id": ["k"], "v": [1]}}}})
    assert index.matching({"source": "mqtt", "data": {"sensor": "s7", "temp": 31}}) == ["guest/s7"]
    assert index.matching({"source": "mqtt", "data": {"sensor": "s7", "temp": 30}}) == []
    assert index.matching({"source": "other", "data": {"sensor": "s7", "temp": 31}}) == []
    assert index.matching({"source": "mqtt", "data": {"sensor": ["s1", "s2", "s1"], "temp": 40}}) == [
        "guest/s1", "guest/s2"]
    # Found inside an array of objects, the anchor must hold in the same element as the rest.
    assert index.matching({"data": {"r": [{"id": "k", "v": 2}, {"id": "j", "v": 1}]}}) == []
    assert index.matching({"data": {"r": [{"id": "j", "v": 1}, {"id": "k", "v": 1}]}}) == ["guest/array"]
    assert index.matching({"data": {"r": {"id": "k", "v": 1}}}) == ["guest/array"]


# ---- properties ------------------------------------------------------------------------------

KEYS = ["a", "b", "c"]
STRINGS = ["", "x", "xy", "yx", "X", "Xy", "10.0.0.5", "10.0.1.5", "::1", "a*b"]
NUMBERS = [-1, 0, 1, 2, 5, 0.5, 5.0, 1e9]
scalars = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.booleans(), st.none())

values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)), max_leaves=8)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)


@st.composite
def numerics(draw: st.DrawFn) -> list[Any]:
    low, high = sorted(draw(st.lists(st.sampled_from(NUMBERS), min_size=2, max_size=2, unique=True)))
    shape = draw(st.sampled_from(["one", "range", "reversed"]))
    if shape == "one":
        return [draw(st.sampled_from(["<", "<=", "=", ">=", ">"])), low]
    lower, upper = [draw(st.sampled_from([">", ">="])), low], [draw(st.sampled_from(["<", "<="])), high]
    return lower + upper if shape == "range" else upper + lower


text_operators = st.one_of(
    st.builds(lambda s: {"prefix": s}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"suffix": s}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"equals-ignore-case": s}, st.sampled_from(["x", "xy", "XY"])),
    st.builds(lambda s: {"wildcard": s}, st.sampled_from(["*", "x*", "*y", "x*y", "10.*.5", "*x*", "x*y*x", "a\\**", "*\\*b"])),
)
alternatives = st.one_of(
    scalars,
    text_operators,
    st.builds(lambda n: {"numeric": n}, numerics()),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(lambda v: {"anything-but": v}, st.one_of(scalars, st.lists(scalars, min_size=1, max_size=3), text_operators)),
    st.builds(lambda c: {"cidr": c}, st.sampled_from(["10.0.0.0/24", "10.0.0.0/8", "::/0"])),
)
leaves = st.lists(alternatives, min_size=1, max_size=3)


def objects(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(KEYS), inner, min_size=1, max_size=2)


nodes = st.recursive(leaves, objects, max_leaves=5)
patterns = st.builds(
    lambda base, alternatives_: {**base, "$or": alternatives_} if alternatives_ else base,
    objects(nodes), st.one_of(st.none(), st.lists(objects(nodes), min_size=1, max_size=2)))


def near(draw: st.DrawFn, pattern: dict[str, Any]) -> dict[str, Any]:
    """A document shaped like `pattern`, its values mostly taken from the pattern's own literals,
    so that a good share of the drawn pairs match (random documents almost never do)."""
    out: dict[str, Any] = {}
    for key, sub in pattern.items():
        if key == "$or":
            for alternative in sub:
                out.update(near(draw, alternative))
            continue
        if draw(st.integers(0, 19)) == 0:
            continue  # absent
        if isinstance(sub, dict):
            element = near(draw, sub)
            out[key] = draw(st.sampled_from([element, [element], [draw(values), element]]))
            continue
        literals = [v for alternative in sub for v in literals_in(alternative)] or [None]
        chosen = draw(st.sampled_from(literals)) if draw(st.integers(0, 3)) else draw(values)
        out[key] = draw(st.sampled_from([chosen, [chosen], [draw(scalars), chosen]]))
    return out


def literals_in(alternative: Any) -> list[Any]:
    if isinstance(alternative, dict):
        return [v for argument in alternative.values() for v in literals_in(argument)]
    if isinstance(alternative, list):
        return [v for item in alternative for v in literals_in(item) if not isinstance(v, str) or v not in "<=>"]
    return [alternative]


@settings(max_examples=300, deadline=None)
@given(pattern=patterns, data=st.data())
def test_compiled_filter_agrees_with_the_plain_evaluator(pattern: dict[str, Any], data: st.DataObject):
    compiled = compile_filter(pattern, top_level=None)
    for document in (data.draw(documents), near(data.draw, pattern)):
        assert compiled.matches(document) is evaluate(pattern, document)
        assert compiled.explain(document).matched is evaluate(pattern, document)


@settings(max_examples=200, deadline=None)
@given(rules=st.lists(st.one_of(st.none(), patterns), min_size=1, max_size=8), data=st.data())
def test_index_agrees_with_the_plain_evaluator(rules: list[dict[str, Any] | None], data: st.DataObject):
    filters: dict[str, Filter | None] = {
        f"guest/r{i}": None if p is None else compile_filter(p, top_level=None) for i, p in enumerate(rules)}
    index = RuleIndex(filters)
    near_events = [near(data.draw, p) for p in rules if p is not None]
    for document in [*near_events, data.draw(documents)]:
        expected = [f"guest/r{i}" for i, p in enumerate(rules) if p is None or evaluate(p, document)]
        assert index.matching(document) == expected


exact_patterns = st.builds(lambda k, v, rest: {k: [v, *rest]}, st.sampled_from(KEYS), scalars, st.lists(scalars, max_size=2))


@settings(max_examples=200, deadline=None)
@given(rules=st.lists(st.one_of(exact_patterns, st.builds(lambda k, p: {k: p}, st.sampled_from(KEYS), exact_patterns)),
                      min_size=1, max_size=12),
       events=st.lists(documents, min_size=1, max_size=5))
def test_index_agrees_on_exact_value_rules(rules: list[dict[str, Any]], events: list[dict[str, Any]]):
    """Exact-value rules are the ones the index files by value: the lookup itself is exercised here."""
    index = RuleIndex({f"r{i}": compile_filter(p, top_level=None) for i, p in enumerate(rules)})
    for document in events:
        assert index.matching(document) == [f"r{i}" for i, p in enumerate(rules) if evaluate(p, document)]
