"""RuleIndex: which of a trigger's rules an event matches, at a cost that grows far slower than
the number of rules.

Each filter with an exact-value clause that every match needs (outside `$or`) is filed under one
such clause, its *anchor*: a dict from (path, value) to rules. The anchor is the clause whose
values are rarest across the trigger's rules, so that a popular value (`"source": ["mqtt"]`)
does not become everyone's entry. Per event: one lookup per distinct anchor path and value
found, then the full compiled filter of each candidate; filters without an anchor are always
checked (the fallback list), and rules without a filter always match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from triggerhub.rules.leaf import Leaf, leaf_values, value_key
from triggerhub.rules.paths import MISSING
from triggerhub.rules.pattern import Check, Filter


class RuleIndex:
    """Built once per trigger version from {rule_key: Filter | None} (None = no filter: always matches)."""

    __slots__ = ("_keys", "_checks", "_anchors", "_fallback", "_unfiltered")

    def __init__(self, filters: Mapping[str, Filter | None]) -> None:
        self._keys = list(filters)
        self._checks: list[Check] = []
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
        popularity = Counter((leaf.steps, key) for exact in leaves.values()
                             for leaf in exact for key in leaf.exact or ())
        for position, exact in leaves.items():
            anchor = min(exact, key=lambda leaf: (max(popularity[(leaf.steps, k)] for k in leaf.exact or ()),
                                                  len(leaf.exact or ())))
            table = self._anchors.setdefault(anchor.steps, {})
            for key in anchor.exact or ():
                table.setdefault(key, []).append(position)

    def __len__(self) -> int:
        return len(self._keys)

    def matching(self, document: Mapping[str, Any]) -> list[str]:
        """Rule keys whose filter matches `document`, in the order given."""
        candidates = self._candidates(document)
        if not candidates:
            return [self._keys[p] for p in self._unfiltered]
        checks = self._checks
        found = [p for p in candidates if checks[p](document)]
        found.extend(self._unfiltered)
        found.sort()
        keys = self._keys
        return [keys[p] for p in found]

    def _candidates(self, document: Mapping[str, Any]) -> list[int]:
        candidates: list[int] = list(self._fallback)
        for steps, table in self._anchors.items():
            for value in _values_at(document, steps):
                hit = table.get(value_key(value))
                if hit is not None:
                    candidates.extend(hit)
        if len(candidates) > 1:
            candidates = list(dict.fromkeys(candidates))
        return candidates


def _always(document: Mapping[str, Any]) -> bool:
    return True


def _values_at(document: Mapping[str, Any], steps: tuple[str, ...]) -> list[Any]:
    """Every leaf value at `steps`, stepping through arrays of objects as filters do."""
    value: Any = document
    for i, step in enumerate(steps):
        if type(value) is dict or (i == 0 and isinstance(value, Mapping)):
            value = value.get(step, MISSING)
        elif type(value) is list:
            return _values_in_array(value, steps[i:])
        else:
            return []
    if type(value) is str:
        return [value]
    return leaf_values(value)


def _values_in_array(values: list[Any], steps: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    for item in values:
        if type(item) is dict:
            out.extend(_values_at(item, steps))
        elif type(item) is list:
            out.extend(_values_in_array(item, steps))
    return out
