"""wskdeploy parameters: single-line (`name: value` or `name: integer`) and multi-line typed forms.

`resolve` turns one declared input into its final JSON value and checks it against its type;
`typed_value` checks an overriding value (deployment file, --param) against the declared type.
wskdeploy never checks values against `type:`, so manifests in the wild rely on `type: string,
default: 0`: `coerce` converts where nothing is lost and says so, and keeps the value otherwise;
the caller reports its note as a warning (an error under --strict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# type name -> canonical type
TYPE_ALIASES = {
    "string": "string", "integer": "integer", "int": "integer", "int8": "integer", "int16": "integer",
    "int32": "integer", "int64": "integer", "float": "float", "float32": "float", "float64": "float",
    "boolean": "boolean", "bool": "boolean", "json": "json", "map": "json", "slice": "slice",
}
ZERO = {"string": "", "integer": 0, "float": 0.0, "boolean": False, "json": {}, "slice": []}
MULTI_LINE_KEYS = frozenset({"type", "value", "default", "description", "required", "status", "schema",
                             "properties"})
CANONICAL_TYPES = "string, integer, float, boolean, json, slice"


@dataclass(frozen=True, slots=True)
class Input:
    """A resolved parameter: its value and the type it was declared with (None: inferred)."""

    value: Any
    declared_type: str | None = None
    note: str | None = None  # the value did not match its type: what was done about it


class ParamTypeError(ValueError):
    """The value does not fit the declared type; the message says what was expected."""


def is_multi_line(raw: Any) -> bool:
    return (isinstance(raw, dict) and bool(raw) and set(raw) <= MULTI_LINE_KEYS
            and bool({"type", "value", "default"} & set(raw)))


def resolve(raw: Any) -> Input:
    """One input as declared in a manifest. Raises ParamTypeError with a user-facing message."""
    if isinstance(raw, str) and raw in TYPE_ALIASES:
        declared_kind = TYPE_ALIASES[raw]
        return Input(_copy(ZERO[declared_kind]), declared_kind)
    if not is_multi_line(raw):
        return Input(raw)
    declared = raw.get("type")
    kind: str | None = None
    if declared is not None:
        if not isinstance(declared, str) or declared not in TYPE_ALIASES:
            raise ParamTypeError(f"unknown parameter type {describe(declared)}; allowed: {CANONICAL_TYPES}")
        kind = TYPE_ALIASES[declared]
    value = raw["value"] if raw.get("value") is not None else raw.get("default")
    if value is None:
        if raw.get("required") is True:
            raise ParamTypeError("required parameter has no value; set 'value' or 'default'")
        return Input(_copy(ZERO[kind]) if kind else None, kind)
    coerced, note = coerce(value, kind)
    return Input(coerced, kind, note)


def coerce(value: Any, kind: str | None) -> tuple[Any, str | None]:
    """`value` as `kind` where that loses nothing, else unchanged; the note says which happened."""
    try:
        return typed_value(value, kind), None
    except ParamTypeError as exc:
        converted = _lossless(value, kind)
        if converted is not _KEEP:
            return converted, f"{describe(value)} does not match 'type: {kind}'; converted to {json.dumps(converted)}"
        return value, f"{exc}; the value is passed on unchanged (wskdeploy does not check types)"


_KEEP = object()


def _lossless(value: Any, kind: str | None) -> Any:
    """The conversions wskdeploy users rely on that typed_value refuses: to text, and whole floats."""
    if kind == "string" and isinstance(value, bool | int | float):
        return json.dumps(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return _KEEP


def typed_value(value: Any, kind: str | None) -> Any:
    """`value` converted to `kind` where that is lossless (strings from $VAR), else ParamTypeError."""
    if kind is None or value is None:
        return value
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind == "json":
        if isinstance(value, dict | list):
            return value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict | list):
                return parsed
    elif kind == "slice":
        if isinstance(value, list):
            return value
    raise ParamTypeError(f"expected {kind}, got {describe(value)}")


def describe(value: Any) -> str:
    """How an offending YAML value is named in error messages: "string 'x'", "a list", ..."""
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string '{value}'"
    if value is None:
        return "nothing (null)"
    return "a list" if isinstance(value, list) else "a mapping"


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))
