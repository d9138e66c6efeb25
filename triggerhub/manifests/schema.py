"""The wskdeploy manifest grammar as a JSON Schema, and its errors turned into positioned Problems.

Only the shape is checked here (keys, types, enums); meaning (references between entities,
parameter types, runtimes, limits) is checked in `project.py`.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from triggerhub.errors import Problem
from triggerhub.manifests.params import describe
from triggerhub.manifests.source import Source, YamlPath

WEB_VALUES = [True, False, "true", "false", "yes", "no", "raw"]

_STR = {"type": "string"}
_ANY_MAP = {"type": ["object", "null"]}
_VERSION = {"type": ["string", "number"]}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = (), *, nullable: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": ["object", "null"] if nullable else "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _named(entity: dict[str, Any]) -> dict[str, Any]:
    return {"type": ["object", "null"], "additionalProperties": entity}


LIMITS = _closed({k: {"type": "integer"} for k in (
    "timeout", "memorySize", "logSize", "concurrentActivations", "userInvocationRate", "codeSize",
    "parameterSize")})

ACTION = _closed({
    "function": _STR, "code": _STR, "runtime": _STR, "kind": _STR, "main": _STR, "docker": _STR,
    "native": {"type": "boolean"}, "conductor": {"type": "boolean"},
    "web": {"enum": WEB_VALUES}, "web-export": {"enum": WEB_VALUES},
    "limits": LIMITS, "inputs": _ANY_MAP, "outputs": _ANY_MAP, "annotations": _ANY_MAP,
    "include": {"type": "array"}, "exclude": {"type": "array"},
    "version": _VERSION, "namespace": _STR, "credential": _STR, "location": _STR, "description": _STR,
})

SEQUENCE = _closed({
    "actions": _STR, "web": {"enum": WEB_VALUES}, "web-export": {"enum": WEB_VALUES},
    "annotations": _ANY_MAP, "description": _STR, "version": _VERSION,
}, required=("actions",), nullable=False)

TRIGGER = _closed({
    "feed": _STR, "source": _STR, "inputs": _ANY_MAP, "annotations": _ANY_MAP, "namespace": _STR,
    "credential": _STR, "description": _STR, "version": _VERSION,
    "derive": {"type": "object"},  # a derived trigger (README: correlation and absence); the hub checks it
})

RULE = _closed({
    "trigger": _STR, "action": _STR, "rule": _STR, "annotations": _ANY_MAP, "description": _STR,
    "version": _VERSION, "filter": {"type": "object"}, "transform": {"type": "object"}, "shadow": {"type": "boolean"},
    "retry": {"type": "object"}, "deadLetter": {"type": "object"},
}, required=("trigger", "action"), nullable=False)

DEPENDENCY = _closed({
    "location": _STR, "version": _VERSION, "inputs": _ANY_MAP, "annotations": _ANY_MAP,
}, required=("location",), nullable=False)

PACKAGE = _closed({
    "version": _VERSION, "license": _STR, "public": {"type": "boolean"}, "namespace": _STR,
    "credential": _STR, "apiHost": _STR, "apigwAccessToken": _STR, "description": _STR,
    "annotations": _ANY_MAP, "inputs": _ANY_MAP,
    "dependencies": _named(DEPENDENCY), "actions": _named(ACTION), "sequences": _named(SEQUENCE),
    "triggers": _named(TRIGGER), "rules": _named(RULE),
    "feeds": _ANY_MAP, "apis": _ANY_MAP,
})

PROJECT = _closed({
    "name": _STR, "namespace": _STR, "credential": _STR, "apiHost": _STR, "apigwAccessToken": _STR,
    "version": _VERSION, "config": _STR, "inputs": _ANY_MAP, "packages": _named(PACKAGE),
})

MANIFEST = _closed({"project": PROJECT, "packages": _named(PACKAGE)}, nullable=False)

# A deployment file mirrors the manifest tree but carries only values to overlay.
_OVERLAY_ENTITY = {"type": ["object", "null"], "properties": {"inputs": _ANY_MAP}}
_OVERLAY_PACKAGE = {
    "type": ["object", "null"],
    "properties": {
        "inputs": _ANY_MAP, "namespace": _STR, "credential": _STR,
        **{kind: {"type": ["object", "null"], "additionalProperties": _OVERLAY_ENTITY}
           for kind in ("actions", "sequences", "triggers", "rules", "dependencies")},
    },
}
DEPLOYMENT = _closed({
    "project": {"type": ["object", "null"], "properties": {
        "name": _STR, "namespace": _STR, "credential": _STR, "apiHost": _STR, "inputs": _ANY_MAP,
        "packages": {"type": ["object", "null"], "additionalProperties": _OVERLAY_PACKAGE}}},
    "packages": {"type": ["object", "null"], "additionalProperties": _OVERLAY_PACKAGE},
}, nullable=False)


def check_shape(source: Source, schema: dict[str, Any]) -> list[Problem]:
    """Every schema violation in `source`, in document order."""
    return [problem for _, problem in shape_errors(source, schema)]


def shape_errors(source: Source, schema: dict[str, Any]) -> list[tuple[YamlPath, Problem]]:
    """Like check_shape, keeping the YAML path of the node each problem is about."""
    validator = Draft202012Validator(schema)
    found: list[tuple[YamlPath, Problem]] = []
    for error in validator.iter_errors(source.data):
        path: YamlPath = tuple(error.absolute_path)
        found.extend((path, problem) for problem in _problems(source, error))
    found.sort(key=lambda item: (item[1].line, item[1].column, item[1].message))
    return found


def _problems(source: Source, error: ValidationError) -> list[Problem]:
    path: YamlPath = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        return [source.problem(path + (key,), f"unknown key '{key}'; allowed: {', '.join(allowed)}")
                for key in extra]
    if kind == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [source.problem(path, f"missing required key '{key}'") for key in missing]
    if kind == "type":
        wanted = error.validator_value
        wanted_list = wanted if isinstance(wanted, list) else [wanted]
        wanted_text = " or ".join(_type_word(w) for w in wanted_list if w != "null")
        return [source.problem(path, f"expected {wanted_text}, got {describe(error.instance)}")]
    if kind == "enum":
        choices = ", ".join(_literal(v) for v in error.validator_value if not isinstance(v, str)
                            or v not in ("true", "false"))
        return [source.problem(path, f"{describe(error.instance)} is not allowed; allowed: {choices}")]
    return [source.problem(path, error.message)]


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean (true or false)"}


def _type_word(name: str) -> str:
    return _TYPE_WORDS.get(name, name)


def _literal(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value
