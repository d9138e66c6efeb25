"""RuleIndex: which of a trigger's rules an event matches, at a cost that grows far slower than
the number of rules.

Each filter with an exact-value clause that every match needs (outside `$or`) is filed under one
such clause, its *anchor*: a dict from (path, value) to rules. The anchor is the clause whose
values are rarest across the trigger's rules, so that a popular value (`"source": ["mqtt"]`)
does not become everyone's entry. Per event: one lookup per distinct anchor path and value
found, then a check of each candidate; filters without an anchor are always checked (the
fallback list), and rules without a filter always match.

A candidate found through plain objects has its anchor clause satisfied already, so only the
rest of its pattern is checked, and that rest is compiled once per distinct rest: a fleet of
rules that differ only in their anchor value (`"sensor": ["s-17"]`) shares one small check, which
stays in the CPU caches however many rules there are. A candidate found inside an array of
objects is checked whole, since its clauses must then hold in one element together.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from triggerhub.rules.leaf import Leaf, flatten, leaf_values, value_key
from triggerhub.rules.paths import MISSING
from triggerhub.rules.pattern import Check, Filter, compile_filter


class RuleIndex:
    """Built once per trigger version from {rule_key: Filter | None} (None = no filter: always matches)."""

    __slots__ = ("_keys", "_checks", "_rests", "_anchors", "_fallback", "_unfiltered")

    def __init__(self, filters: Mapping[str, Filter | None]) -> None:
        self._keys = list(filters)
        self._checks: list[Check] = []  # each rule's whole filter
        self._rests: list[Check] = []  # each anchored rule's filter without its anchor clause
        self._unfiltered: list[int] = []
        self._fallback: list[int] = []
        self._anchors: dict[tuple[str, ...], dict[Any, list[int]]] = {}
        leaves: dict[int, list[Leaf]] = {}
        for position, found in enumerate(filters.values()):
            self._checks.append(_always if found is None else found.matches)
            if found is None:
                self._unfiltered.append(position)
            elif exact := found.exact_leaves():
                leaves[position] = exact
            else:
                self._fallback.append(position)
        self._rests = list(self._checks)
        popularity = Counter((leaf.steps, key) for exact in leaves.values()
                             for leaf in exact for key in leaf.exact or ())
        rests: dict[str, Check] = {}
        for position, exact in leaves.items():
            anchor = min(exact, key=lambda leaf: (max(popularity[(leaf.steps, k)] for k in leaf.exact or ()),
                                                  len(leaf.exact or ())))
            table = self._anchors.setdefault(anchor.steps, {})
            for key in anchor.exact or ():
                table.setdefault(key, []).append(position)
            source = filters[self._keys[position]].source  # type: ignore[union-attr]
            self._rests[position] = _rest_check(_without(source, anchor.steps), rests)

    def __len__(self) -> int:
        return len(self._keys)

    def matching(self, document: Mapping[str, Any]) -> list[str]:
        """Rule keys whose filter matches `document`, in the order given."""
        checks = self._checks
        found = [p for p in self._fallback if checks[p](document)]
        for steps, table in self._anchors.items():
            values, through_array = _values_at(document, steps)
            verify = checks if through_array else self._rests
            if len(values) == 1:
                hit = table.get(value_key(values[0]))
                if hit is not None:
                    found.extend(p for p in hit if verify[p](document))
            elif values:
                hits = dict.fromkeys(p for value in values for p in table.get(value_key(value), ()))
                found.extend(p for p in hits if verify[p](document))
        if self._unfiltered:
            found.extend(self._unfiltered)
        if len(found) > 1:
            found.sort()
        keys = self._keys
        return [keys[p] for p in found]


def _always(document: Mapping[str, Any]) -> bool:
    return True


def _without(pattern: dict[str, Any], steps: tuple[str, ...]) -> dict[str, Any]:
    """`pattern` without the field at `steps`; objects left empty go too."""
    rest = dict(pattern)
    key = steps[0]
    if len(steps) == 1:
        del rest[key]
    elif inner := _without(pattern[key], steps[1:]):
        rest[key] = inner
    else:
        del rest[key]
    return rest


def _rest_check(rest: dict[str, Any], compiled: dict[str, Check]) -> Check:
    if not rest:
        return _always
    text = json.dumps(rest, sort_keys=True)
    check = compiled.get(text)
    if check is None:
        check = compiled[text] = compile_filter(rest, top_level=None).matches
    return check


def _values_at(document: Mapping[str, Any], steps: tuple[str, ...]) -> tuple[list[Any], bool]:
    """Every leaf value at `steps`, stepping through arrays of objects as filters do, and
    whether any array of objects was stepped through."""
    value: Any = document
    for i, step in enumerate(steps):
        if type(value) is dict or (i == 0 and isinstance(value, Mapping)):
            value = value.get(step, MISSING)
        elif type(value) is list:
            return _values_in_array(value, steps[i:]), True
        else:
            return [], False
    if type(value) is str:
        return [value], False
    return leaf_values(value), False


def _values_in_array(values: list[Any], steps: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    for item in flatten(values):
        if type(item) is dict:
            out.extend(_values_at(item, steps)[0])
    return out
