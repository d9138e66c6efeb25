"""Event patterns with AWS EventBridge semantics, compiled once into closures, and explained.

A pattern is a JSON object shaped like the event document (see events.py). Each key names a
field; its value is either a nested object (a pattern for that sub-object) or a leaf list of
alternatives (leaf.py). Sibling fields are ANDed; `{"$or": [p1, p2, ...]}` at any object level
adds "at least one of these sub-patterns matches the same object". When an event field holds an
array of objects, a nested pattern matches when one element matches the whole sub-pattern.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from triggerhub.errors import PatternError
from triggerhub.rules.leaf import Leaf, Predicate, compile_leaf, flatten
from triggerhub.rules.paths import MISSING, render_path, show

Check = Callable[[Mapping[str, Any]], bool]
MAX_DEPTH = 32  # compiling and matching recurse once per level

# The top-level fields an event document (events.event_document) can have; `mqtt` is the MQTT
# envelope's extension attribute. A pattern naming any other top-level field could never match.
EVENT_FIELDS = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "trigger",
                "mqtt")
_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Clause:
    """One leaf test as evaluated against one document.

    `group` is "" for clauses every match needs; inside `$or` it is the pattern position of the
    alternative the clause belongs to, e.g. `$.$or[1]` or `$.data.$or[0]` (nested: `$.$or[0].$or[1]`).
    """

    path: str  # where in the document: "$.data.temp"
    value: Any  # the value found there (None when absent; a list when found in several array elements)
    present: bool  # False when the path is absent
    matched: bool
    test: Any  # the clause as written, e.g. [{"numeric": [">", 30]}]
    group: str = ""


@dataclass(frozen=True, slots=True)
class Explanation:
    matched: bool
    clauses: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class _Object:
    """A compiled object pattern: fields ANDed, then each `$or` needing one alternative."""

    fields: tuple[tuple[str, Leaf | _Object], ...]
    alternatives: tuple[tuple[str, tuple[_Object, ...]], ...]  # ($or pattern path, its alternatives)
    check: Check


class Filter:
    """A compiled event pattern. `matches` runs only closures; `explain` walks the same tree."""

    __slots__ = ("source", "_root", "matches")

    def __init__(self, source: Any, root: _Object) -> None:
        self.source = source
        self._root = root
        self.matches: Check = root.check

    def __repr__(self) -> str:
        return f"Filter({self.source!r})"

    def exact_leaves(self) -> list[Leaf]:
        """Leaves every match needs (outside `$or`) that hold only exact values: index anchors."""
        found: list[Leaf] = []
        pending = [self._root]
        while pending:
            node = pending.pop()
            for _, sub in node.fields:
                if isinstance(sub, _Object):
                    pending.append(sub)
                elif sub.exact is not None:
                    found.append(sub)
        return found

    def explain(self, document: Mapping[str, Any]) -> Explanation:
        """Every leaf clause in pattern order, with the value found at its path.

        The verdict is `matches(document)`. It equals: every clause whose `group` is "" matched,
        and for each `$or` at position P some alternative P[i] had all its clauses (group P[i],
        or nested deeper under P[i]) matched. Inside arrays of objects the verdict needs a single
        element to satisfy a whole sub-pattern, while a clause reports the values of all elements.
        """
        clauses: list[Clause] = []
        _explain(self._root, [document], (), "", clauses, through_array=False)
        return Explanation(self.matches(document), tuple(clauses))


def compile_filter(pattern: Any, *, top_level: Collection[str] | None = EVENT_FIELDS) -> Filter:
    """Validate and compile `pattern`; raises PatternError naming the JSON path of a bad clause.

    `top_level` lists the fields a document can have at its root (the event document's, by
    default): a pattern naming another one could never match, so it is refused. None allows any.
    """
    if not isinstance(pattern, dict):
        raise _error("$", f"expected an object like {{\"data\": {{\"temp\": [{{\"numeric\": [\">\", 30]}}]}}}}, "
                          f"got {show(pattern)}")
    return Filter(pattern, _compile_object(pattern, (), "$", None if top_level is None else tuple(top_level)))


def _compile_object(pattern: dict[str, Any], steps: tuple[str, ...], at: str,
                    top_level: tuple[str, ...] | None) -> _Object:
    if not pattern:
        raise _error(at, "an empty object tests nothing; give at least one field")
    if len(steps) + at.count(".$or") > MAX_DEPTH:
        raise _error(at, f"nested deeper than {MAX_DEPTH} objects and $or lists; flatten the pattern")
    fields: list[tuple[str, Leaf | _Object]] = []
    alternatives: list[tuple[str, tuple[_Object, ...]]] = []
    for key, value in pattern.items():
        if not isinstance(key, str):
            raise _error(at, f"field names are strings, got {show(key)}")
        if key == "$or":
            alternatives.append((f"{at}.$or", _compile_or(value, steps, f"{at}.$or", top_level)))
            continue
        if key.startswith("$"):
            raise _error(at, f"unknown operator {show(key)}; allowed at object level: $or")
        field_steps = (*steps, key)
        field_at = at + render_path((key,))[1:]  # the position in the pattern, `$or` included
        if not steps and top_level is not None and key not in top_level:
            raise _error(field_at, f"events have no top-level field {show(key)}; they have {', '.join(top_level)} "
                                   f"(the payload is under data: {{\"data\": {{{json.dumps(key)}: ...}}}})")
        if isinstance(value, dict):
            fields.append((key, _compile_object(value, field_steps, field_at, None)))
        else:
            fields.append((key, compile_leaf(field_steps, field_at, value)))
    return _Object(tuple(fields), tuple(alternatives), _object_check(fields, alternatives))


def _compile_or(value: Any, steps: tuple[str, ...], at: str, top_level: tuple[str, ...] | None) -> tuple[_Object, ...]:
    if not isinstance(value, list) or not value:
        raise _error(at, "expected a non-empty list of patterns, like [{\"a\": [1]}, {\"b\": [2]}], "
                         f"got {show(value)}")
    compiled: list[_Object] = []
    for i, alternative in enumerate(value):
        if not isinstance(alternative, dict):
            raise _error(f"{at}[{i}]", f"expected an object pattern, got {show(alternative)}")
        compiled.append(_compile_object(alternative, steps, f"{at}[{i}]", top_level))
    return tuple(compiled)


def _object_check(fields: list[tuple[str, Leaf | _Object]],
                  alternatives: list[tuple[str, tuple[_Object, ...]]]) -> Check:
    tests = tuple((key, sub.test if isinstance(sub, Leaf) else _nested_test(sub.check)) for key, sub in fields)
    ors = tuple(tuple(alt.check for alt in group) for _, group in alternatives)
    if not ors and len(tests) <= 3:
        return _few_fields(tests)
    if not ors:
        def check(document: Mapping[str, Any]) -> bool:
            get = document.get
            for key, test in tests:
                if not test(get(key, MISSING)):
                    return False
            return True

        return check

    def check_with_or(document: Mapping[str, Any]) -> bool:
        get = document.get
        for key, test in tests:
            if not test(get(key, MISSING)):
                return False
        for group in ors:
            for alternative in group:
                if alternative(document):
                    break
            else:
                return False
        return True

    return check_with_or


def _few_fields(tests: tuple[tuple[str, Predicate], ...]) -> Check:
    """The usual object of one to three fields, unrolled: no loop, and fewer objects to reach
    per check, which matters when thousands of rules each verify their own."""
    if len(tests) == 1:
        ((key, test),) = tests
        return lambda document: test(document.get(key, MISSING))
    if len(tests) == 2:
        (key, test), (key2, test2) = tests
        return lambda document: test(document.get(key, MISSING)) and test2(document.get(key2, MISSING))
    (key, test), (key2, test2), (key3, test3) = tests
    return lambda document: (test(document.get(key, MISSING)) and test2(document.get(key2, MISSING))
                             and test3(document.get(key3, MISSING)))


def _nested_test(check: Check) -> Predicate:
    def test(value: Any) -> bool:
        if type(value) is dict:
            return check(value)
        if type(value) is list:
            objects = _objects(value)
            if objects:
                return any(check(o) for o in objects)
        return check(_EMPTY)

    return test


def _objects(values: list[Any]) -> list[Mapping[str, Any]]:
    """The objects inside an array (nested arrays flattened): where a nested pattern looks."""
    return [item for item in flatten(values) if type(item) is dict]


def _explain(node: _Object, contexts: list[Mapping[str, Any]], steps: tuple[str, ...], group: str,
             out: list[Clause], *, through_array: bool) -> None:
    for key, sub in node.fields:
        raw = [context.get(key, MISSING) for context in contexts]
        if isinstance(sub, Leaf):
            found = [value for value in raw if value is not MISSING]
            if through_array:
                value: Any = found
                present, matched = bool(found), any(sub.test(r) for r in raw)
            else:
                value, present, matched = (found[0] if found else None), bool(found), sub.test(raw[0])
            out.append(Clause(sub.path, value, present, matched, sub.source, group))
            continue
        inner: list[Mapping[str, Any]] = []
        arrays = through_array
        for value in raw:
            if type(value) is dict:
                inner.append(value)
            elif type(value) is list and (objects := _objects(value)):
                inner.extend(objects)
                arrays = True
            else:
                inner.append(_EMPTY)
        _explain(sub, inner, (*steps, key), group, out, through_array=arrays)
    for or_at, alternatives in node.alternatives:
        for i, alternative in enumerate(alternatives):
            _explain(alternative, contexts, steps, f"{or_at}[{i}]", out, through_array=through_array)


def _error(path: str, what: str) -> PatternError:
    return PatternError(f"filter {path}: {what}", path=path)
