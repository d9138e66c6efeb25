"""JSON paths as filters report them and transforms read them: `$`, `$.a.b`, `$.a[0]`, `$['a b']`.

A path is parsed once into steps (a `str` is an object key, an `int` a list index) and rendered
back the same way, so a path shown by an explain trace can be pasted into a transform.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

Step = str | int


class _Missing:
    """The value of a path that leads nowhere; distinct from JSON null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(\d+)\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")
_ESCAPE = re.compile(r"\\(.)")


def parse_path(text: str) -> tuple[Step, ...]:
    """`$.data.temp` → ("data", "temp"); raises ValueError saying what is wrong and where
    (characters counted from 1)."""
    if not text.startswith("$"):
        raise ValueError("a path starts with '$', as in $.data.temp")
    steps: list[Step] = []
    at = 1
    while at < len(text):
        if text[at] == ".":
            name = _NAME.match(text, at + 1)
            if name is None:
                raise ValueError(f"expected a name after the '.' at character {at + 1} (quote other keys: $['a b'])")
            steps.append(name.group())
            at = name.end()
        elif (index := _INDEX.match(text, at)) is not None:
            steps.append(int(index.group(1)))
            at = index.end()
        elif (quoted := _QUOTED.match(text, at)) is not None:
            raw = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
            steps.append(_ESCAPE.sub(r"\1", raw))
            at = quoted.end()
        else:
            raise ValueError(f"unexpected {text[at]!r} at character {at + 1}; use .name, [0] or ['name']")
    return tuple(steps)


def render_path(steps: tuple[Step, ...] | list[Step]) -> str:
    """The inverse of parse_path: ("data", "a b", 0) → `$.data['a b'][0]`."""
    out = ["$"]
    for step in steps:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif _NAME.fullmatch(step):
            out.append(f".{step}")
        else:
            out.append("['" + step.replace("\\", "\\\\").replace("'", "\\'") + "']")
    return "".join(out)


def lookup(document: Any, steps: tuple[Step, ...]) -> Any:
    """The value at `steps`, or MISSING. Keys step into objects, indexes into lists; nothing else."""
    value = document
    for step in steps:
        if isinstance(step, int):
            if type(value) is not list or step >= len(value):
                return MISSING
            value = value[step]
        elif isinstance(value, Mapping):
            value = value.get(step, MISSING)
            if value is MISSING:
                return MISSING
        else:
            return MISSING
    return value


def show(value: Any) -> str:
    """A value as messages quote it: strings in single quotes, the rest as JSON."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)
