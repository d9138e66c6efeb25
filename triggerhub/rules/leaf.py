"""One leaf of an event pattern (`"temp": [30, {"numeric": [">", 40]}]`), validated and compiled.

A leaf is a list of alternatives: exact values and operator objects. It matches when any
alternative matches any *leaf value* found at its path: the value itself when it is a scalar
(string, number, boolean, null), every scalar element when it is an array (nested arrays are
flattened), and nothing when it is absent or an object. `exists: false` is the exception: it
matches when there is no leaf value at all.
"""

from __future__ import annotations

import ipaddress
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from triggerhub.errors import PatternError
from triggerhub.rules.paths import MISSING, render_path, show

Predicate = Callable[[Any], bool]

OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard", "numeric", "exists", "anything-but", "cidr")
NUMERIC_OPERATORS = ("<", "<=", "=", ">=", ">")
_ANYTHING_BUT_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
_LOWER: dict[str, Callable[[Any, Any], bool]] = {">": operator.gt, ">=": operator.ge}
_UPPER: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le}

# Exact values are compared by JSON type and value: "5" is not 5, true is not 1, 5 is 5.0.
_BOOL, _NUMBER = "b", "n"


def value_key(value: Any) -> Any:
    """A hashable key equal only for JSON-equal scalars (Python's True == 1 must not hold here)."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return (_BOOL, value)
    if kind is int or kind is float:
        return (_NUMBER, value)
    return (type(value).__name__, id(value))  # objects and arrays equal nothing


def is_number(value: Any) -> bool:
    """A JSON number: never a boolean, a string of digits, NaN or infinity."""
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def leaf_values(value: Any) -> list[Any]:
    """The scalars a leaf tests: arrays flattened, objects and MISSING contribute nothing."""
    if type(value) is list:
        return [item for item in flatten(value) if type(item) is not dict]
    if value is MISSING or type(value) is dict:
        return []
    return [value]


def flatten(values: list[Any]) -> list[Any]:
    """The non-array items of an array and of the arrays inside it, in order. Iterative: an event
    may nest arrays as deep as its JSON parser allowed, deeper than Python's recursion limit."""
    out: list[Any] = []
    stack = [iter(values)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


@dataclass(frozen=True, slots=True)
class Leaf:
    """A compiled leaf. `exact` holds the value keys when every alternative is an exact value
    (the index can then look the rule up by value); `test` takes the raw value (or MISSING)."""

    steps: tuple[str, ...]
    path: str
    source: list[Any]
    exact: frozenset[Any] | None
    test: Predicate


def compile_leaf(steps: tuple[str, ...], path: str, source: Any) -> Leaf:
    """Compile the leaf at document path `steps`; `path` is its position in the pattern, for errors."""
    if not isinstance(source, list):
        raise _error(path, "expected a list of values or operators, like [30] or [{\"numeric\": [\">\", 30]}], "
                           f"got {show(source)}")
    if not source:
        raise _error(path, "an empty list matches nothing; give at least one value or operator")
    exact: list[Any] = []
    predicates: list[Predicate] = []
    exists_false = False
    for i, alternative in enumerate(source):
        at = f"{path}[{i}]"
        if isinstance(alternative, dict):
            name, argument = _operator(at, alternative)
            if name == "exists":
                if not isinstance(argument, bool):
                    raise _error(f"{at}.exists", f"expected true or false, got {show(argument)}")
                if argument:
                    predicates.append(_always)
                else:
                    exists_false = True
            else:
                predicates.append(_compile_operator(f"{at}.{name}", name, argument))
        elif isinstance(alternative, list):
            raise _error(at, "a list inside a list is not allowed; list the values directly: [\"a\", \"b\"]")
        else:
            exact.append(_scalar(at, alternative))
    if exact:
        predicates.insert(0, _exact(exact))
    only_exact = bool(exact) and len(predicates) == 1 and not exists_false
    keys = frozenset(value_key(v) for v in exact) if only_exact else None
    return Leaf(steps, render_path(steps), source, keys, _shared(source, predicates, exists_false=exists_false))


# Identical leaves (`"source": ["mqtt://sensors"]` in every rule of a fleet) share one compiled
# test: thousands of rules then keep far fewer objects, and verifying a candidate stays in cache.
_SHARED_MAX = 50_000
_shared_tests: dict[str, Predicate] = {}


def _shared(source: list[Any], predicates: list[Predicate], *, exists_false: bool) -> Predicate:
    try:
        text = json.dumps(source, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return _leaf_test(_any_of(predicates), exists_false=exists_false)
    test = _shared_tests.get(text)
    if test is None:
        if len(_shared_tests) >= _SHARED_MAX:
            _shared_tests.clear()
        test = _shared_tests[text] = _leaf_test(_any_of(predicates), exists_false=exists_false)
    return test


def _leaf_test(predicate: Predicate, *, exists_false: bool) -> Predicate:
    def test(value: Any) -> bool:
        kind = type(value)
        if kind is list:
            values = leaf_values(value)
            if not values:
                return exists_false
            for item in values:
                if predicate(item):
                    return True
            return False
        if kind is dict or value is MISSING:
            return exists_false
        return predicate(value)

    return test


def _any_of(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return _never
    if len(predicates) == 1:
        return predicates[0]
    options = tuple(predicates)
    return lambda value: any(p(value) for p in options)


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _exact(values: list[Any]) -> Predicate:
    if not any(type(v) is bool or is_number(v) for v in values):
        # Strings and null only: plain set membership is already type-exact for any scalar.
        return frozenset(values).__contains__
    keys = frozenset(value_key(v) for v in values)
    return lambda value: value_key(value) in keys


def _operator(at: str, clause: dict[str, Any]) -> tuple[str, Any]:
    if len(clause) != 1:
        names = ", ".join(sorted(clause)) or "none"
        raise _error(at, f"an operator object has exactly one key, got {len(clause)} ({names}); "
                         f"allowed: {', '.join(OPERATORS)}")
    ((name, argument),) = clause.items()
    if name not in OPERATORS:
        raise _error(at, f"unknown operator {show(name)}; allowed: {', '.join(OPERATORS)}")
    return name, argument


def _compile_operator(at: str, name: str, argument: Any) -> Predicate:
    if name == "numeric":
        return _numeric(at, argument)
    if name == "anything-but":
        return _anything_but(at, argument)
    if name == "cidr":
        return _cidr(at, argument)
    return _string_operator(at, name, argument)


def _string_operator(at: str, name: str, argument: Any) -> Predicate:
    ignore_case = False
    if name in ("prefix", "suffix") and isinstance(argument, dict):
        if list(argument) != ["equals-ignore-case"] or not isinstance(argument["equals-ignore-case"], str):
            raise _error(at, f"expected a string or {{\"equals-ignore-case\": \"...\"}}, got {show(argument)}")
        argument, ignore_case = argument["equals-ignore-case"], True
    if not isinstance(argument, str):
        raise _error(at, f"expected a string, got {show(argument)}")
    if name == "prefix":
        if ignore_case:
            folded = argument.casefold()
            return lambda v: type(v) is str and v.casefold().startswith(folded)
        return lambda v: type(v) is str and v.startswith(argument)
    if name == "suffix":
        if ignore_case:
            folded = argument.casefold()
            return lambda v: type(v) is str and v.casefold().endswith(folded)
        return lambda v: type(v) is str and v.endswith(argument)
    if name == "equals-ignore-case":
        folded = argument.casefold()
        return lambda v: type(v) is str and v.casefold() == folded
    return _wildcard(at, argument)


def _wildcard(at: str, argument: str) -> Predicate:
    if re.search(r"(?<!\\)\*\*", argument):
        raise _error(at, f"consecutive '*' are not allowed in {show(argument)}; one '*' already matches any run")
    # `\*` is a literal star; every other character is literal too.
    pieces = tuple(piece.replace("\\*", "*") for piece in re.split(r"(?<!\\)\*", argument))
    if len(pieces) == 1:
        return lambda v: v == pieces[0]
    return lambda v: type(v) is str and _glob(pieces, v)


def _glob(pieces: tuple[str, ...], text: str) -> bool:
    """`pieces` joined by `*` matches `text`. Greedy and linear in the pieces: a regular expression
    would backtrack exponentially on `*a*a*a*…b` against a long run of a's, and events are untrusted."""
    first, last = pieces[0], pieces[-1]
    end = len(text) - len(last)
    if end < len(first) or not text.startswith(first) or not text.endswith(last):
        return False
    at = len(first)
    for piece in pieces[1:-1]:
        found = text.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def _numeric(at: str, argument: Any) -> Predicate:
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise _error(at, f"expected [operator, number] or [lower operator, number, upper operator, number], "
                         f"like [\">\", 0, \"<=\", 5], got {show(argument)}")
    bounds: list[tuple[str, int | float]] = []
    for i in range(0, len(argument), 2):
        symbol, number = argument[i], argument[i + 1]
        if not isinstance(symbol, str) or symbol not in NUMERIC_OPERATORS:
            raise _error(f"{at}[{i}]", "expected an operator ('<', '<=', '=', '>=', '>') followed by a number, "
                                       f"got {show(symbol)}")
        if not is_number(number):
            raise _error(f"{at}[{i + 1}]", f"expected a number after {show(symbol)}, got {show(number)}")
        bounds.append((symbol, number))
    if len(bounds) == 1:
        ((symbol, limit),) = bounds
        if symbol == "=":
            return lambda v: is_number(v) and v == limit
        compare = (_LOWER | _UPPER)[symbol]
        return lambda v: is_number(v) and compare(v, limit)
    (first, low), (second, high) = bounds
    if first in _UPPER and second in _LOWER:
        (first, low), (second, high) = (second, high), (first, low)
    if first not in _LOWER or second not in _UPPER:
        raise _error(at, f"a range is one lower bound ('>' or '>=') and one upper bound ('<' or '<='), "
                         f"got {show(argument)}")
    if low > high or (low == high and (first, second) != (">=", "<=")):
        raise _error(at, f"the range {show(argument)} is empty; no number matches it")
    above, below = _LOWER[first], _UPPER[second]
    return lambda v: is_number(v) and above(v, low) and below(v, high)


def _anything_but(at: str, argument: Any) -> Predicate:
    """anything-but matches any leaf value (null included) that the inner test does not match."""
    if isinstance(argument, dict):
        if len(argument) != 1 or next(iter(argument)) not in _ANYTHING_BUT_OPERATORS:
            raise _error(at, f"expected a value, a list of values, or an object with one of "
                             f"{', '.join(_ANYTHING_BUT_OPERATORS)}; got {show(argument)}")
        ((name, inner_argument),) = argument.items()
        inner = _string_operator(f"{at}.{name}", name, inner_argument)
        return lambda v: not inner(v)
    values = argument if isinstance(argument, list) else [argument]
    if not values:
        raise _error(at, "an empty list excludes nothing; give at least one value")
    for i, value in enumerate(values):
        _scalar(f"{at}[{i}]" if isinstance(argument, list) else at, value)
    excluded = _exact(values)
    return lambda v: not excluded(v)


def _cidr(at: str, argument: Any) -> Predicate:
    if not isinstance(argument, str):
        raise _error(at, f"expected a network like '10.0.0.0/24', got {show(argument)}")
    try:
        network = ipaddress.ip_network(argument)
    except ValueError:
        try:
            loose = ipaddress.ip_network(argument, strict=False)
        except ValueError:
            raise _error(at, f"{show(argument)} is not an IPv4 or IPv6 network like '10.0.0.0/24'") from None
        raise _error(at, f"{show(argument)} has host bits set; write the network as {show(loose.with_prefixlen)}") \
            from None

    def inside(value: Any) -> bool:
        if type(value) is not str:
            return False
        try:
            return ipaddress.ip_address(value) in network
        except ValueError:
            return False

    return inside


def _scalar(at: str, value: Any) -> Any:
    if value is None or isinstance(value, (str, bool)) or is_number(value):
        return value
    raise _error(at, f"expected a string, number, boolean or null, got {show(value)}")


def _error(path: str, what: str) -> PatternError:
    return PatternError(f"filter {path}: {what}", path=path)
