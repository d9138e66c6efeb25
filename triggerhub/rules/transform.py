"""Transforms: the action's parameters built from the event document by a JSON template.

A template is a JSON object. Inside it, at any depth:
- a string that is exactly a path (`"$.data.temp"`, `"$.source"`, `"$['detail-type']"`, `"$"`)
  takes the value found there, with its JSON type;
- `{$.path}` placeholders inside a longer string are replaced by the value found there: strings
  as they are, anything else as compact JSON (`{"a":1}`, `true`, `null`);
- every other value is copied as written.

Missing paths: an exact-path value that is absent is left out of its object (null in an array,
to keep positions), and a placeholder renders as the empty string. Leaving the key out lets the
trigger's own parameter of that name, merged under the transform's output, show through; an
empty string keeps the surrounding text readable. An explicit JSON null in the event is kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from triggerhub.errors import PatternError
from triggerhub.rules.paths import MISSING, Step, lookup, parse_path, render_path, show

Render = Callable[[Mapping[str, Any]], Any]
MAX_DEPTH = 32  # compiling and applying recurse once per level
_PLACEHOLDER = re.compile(r"\{(\$[^{}]*)\}")


class Transform:
    """A compiled template; `apply` returns a fresh JSON object for each document."""

    __slots__ = ("source", "_render")

    def __init__(self, source: Any, render: Render) -> None:
        self.source = source
        self._render = render

    def __repr__(self) -> str:
        return f"Transform({self.source!r})"

    def apply(self, document: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._render(document)
        return out


def compile_transform(template: Any) -> Transform:
    """Validate and compile `template`; raises PatternError naming the template position."""
    if not isinstance(template, dict):
        raise _error("$", f"expected an object of parameters like {{\"temp\": \"$.data.temp\"}}, got {show(template)}")
    return Transform(template, _compile(template, ()))


def _compile(node: Any, at: tuple[Step, ...]) -> Render:
    if len(at) > MAX_DEPTH:
        raise _error(render_path(at), f"nested deeper than {MAX_DEPTH} levels; flatten the template")
    if isinstance(node, dict):
        items = []
        for key, value in node.items():
            if not isinstance(key, str):
                raise _error(render_path(at), f"parameter names are strings, got {show(key)}")
            items.append((key, _compile(value, (*at, key))))
        return _object(tuple(items))
    if isinstance(node, list):
        parts = tuple(_compile(value, (*at, i)) for i, value in enumerate(node))
        return lambda document: [_or_null(part(document)) for part in parts]
    if isinstance(node, str):
        return _string(node, at)
    if node is None or isinstance(node, (bool, int, float)):
        return lambda document: node
    raise _error(render_path(at), f"expected a JSON value, got {show(node)}")


def _object(items: tuple[tuple[str, Render], ...]) -> Render:
    def render(document: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for key, part in items:
            value = part(document)
            if value is not MISSING:
                out[key] = value
        return out

    return render


def _string(text: str, at: tuple[Step, ...]) -> Render:
    if text == "$" or text.startswith(("$.", "$[")):
        steps = _parse(text, at)
        return lambda document: _copy(lookup(document, steps))
    pieces = _PLACEHOLDER.split(text)
    if len(pieces) == 1:
        return lambda document: text
    # split() alternates literal text and placeholder paths: [text, path, text, path, text]
    literal = tuple(pieces[0::2])
    paths = tuple(_parse(path, at) for path in pieces[1::2])

    def interpolate(document: Mapping[str, Any]) -> str:
        out = [literal[0]]
        for steps, after in zip(paths, literal[1:]):
            out.append(_text(lookup(document, steps)))
            out.append(after)
        return "".join(out)

    return interpolate


def _parse(path: str, at: tuple[Step, ...]) -> tuple[Step, ...]:
    try:
        return parse_path(path)
    except ValueError as exc:
        raise _error(render_path(at), f"bad path {show(path)}: {exc}") from None


def _text(value: Any) -> str:
    if value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _copy(value: Any) -> Any:
    # Parameters must not share mutable parts with the event document the engine keeps.
    # A JSON round trip rather than copy.deepcopy: the C encoder and decoder go as deep as the
    # parser that built the event did, where deepcopy's recursion stops at half that depth.
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value


def _or_null(value: Any) -> Any:
    return None if value is MISSING else value


def _error(path: str, what: str) -> PatternError:
    return PatternError(f"transform {path}: {what}", path=path)
