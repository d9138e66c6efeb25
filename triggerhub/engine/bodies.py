"""Request bodies of entity PUTs, parsed and checked: pure functions, no I/O.

Every size limit enforced here comes from the configuration (`LimitsConfig`, `ApiConfig`), the
same values `GET /api/v1/namespaces/_/limits` reports, so the enforced and the reported limit
cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from triggerhub.config import LimitsConfig
from triggerhub.engine import kinds
from triggerhub.errors import BadRequest, Forbidden, PayloadTooLarge
from triggerhub.rules.retry_policy import parse_dead_letter, parse_retry
from triggerhub.model import (
    JSON, ActionLimits, Entity, Exec, FullyQualifiedName, Kind, Parameters, bump_version, params_from_json,
)

ANNOTATIONS_LIMIT_BYTES = 1024 * 1024


def parse_exec(body: Any, fqn: FullyQualifiedName, *, max_code_bytes: int) -> Exec:
    """An action's `exec` (a sequence's components resolved against `fqn`'s namespace)."""
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        raise BadRequest("exec malformed: expected an object with a 'kind' string")
    kind = kinds.resolve_kind(body["kind"])
    if kind == Kind.SEQUENCE:
        components = body.get("components")
        if not components:
            raise BadRequest("No component specified for the sequence.")
        if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
            raise BadRequest("exec malformed: sequence components must be a list of action names")
        try:
            resolved = tuple(str(FullyQualifiedName.parse(c, fqn.namespace)) for c in components)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return Exec(kind=kind, components=resolved)
    code = body.get("code")
    image = body.get("image")
    if kind == Kind.BLACKBOX:
        if not isinstance(image, str) or not image:
            raise BadRequest("exec malformed: a blackbox action needs an 'image'")
        if code is not None and not isinstance(code, str):
            raise BadRequest(f"exec malformed: a blackbox action's 'code' must be a base64 zip as a string, "
                             f"got {json.dumps(code)[:100]}")
    elif not isinstance(code, str):
        raise BadRequest(f"exec malformed: kind '{kind}' needs 'code' as a string")
    if code is not None and len(code.encode()) > max_code_bytes:
        raise PayloadTooLarge(f"exec larger than allowed: {len(code.encode())} > {max_code_bytes} bytes.")
    main = body.get("main")
    if main is not None and not isinstance(main, str):
        raise BadRequest(f"exec malformed: 'main' must be a string naming the entry point, got "
                         f"{json.dumps(main)[:100]}")
    binary = kinds.is_binary_code(code) if isinstance(code, str) else False
    return Exec(kind=kind, code=code, binary=binary, main=main if isinstance(main, str) and main else None,
                image=image if isinstance(image, str) else None)

def parse_limits(body: Any, old: ActionLimits, limits: LimitsConfig) -> ActionLimits:
    """An action's `limits`, each within the configured range; absent keys keep `old`'s."""
    if body is None:
        return old
    if not isinstance(body, dict):
        raise BadRequest("limits malformed: expected an object")
    lim = limits
    checks = (("timeout", lim.min_timeout_ms, lim.max_timeout_ms, "milliseconds"),
              ("memory", lim.min_memory_mb, lim.max_memory_mb, "MB"),
              ("logs", lim.min_logs_mb, lim.max_logs_mb, "MB"),
              ("concurrency", 1, 1, "activations"))
    values = old.to_json()
    for key, low, high, unit in checks:
        if key not in body or body[key] is None:
            continue
        value = body[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise BadRequest(f"{key} limit {value!r} is not in the range of {low} to {high} {unit}.")
        values[key] = value
    return ActionLimits.from_json(values)


def next_version(body: dict[str, Any], old: Entity | None) -> str:
    if old is not None:
        return bump_version(old.version)
    version = body.get("version")
    return version if isinstance(version, str) and version.count(".") == 2 else "0.0.1"


def parse_params(body: dict[str, Any], key: str, old: Parameters) -> Parameters:
    if key not in body or body[key] is None:
        return old
    raw = body[key]
    if not isinstance(raw, list) or not all(isinstance(p, dict) and isinstance(p.get("key"), str) for p in raw):
        raise BadRequest(f"{key} malformed: expected an array of {{\"key\": string, \"value\": any}}")
    return params_from_json(raw)


def parse_routing(body: dict[str, Any], key: str, old: Any, compile_: Callable[[Any], object]) -> Any:
    """A rule's `filter` or `transform`: absent keeps the old one, null removes it, anything else
    must compile (PatternError, a 400 naming the JSON path, otherwise)."""
    if key not in body:
        return old
    if body[key] is None:
        return None
    compile_(body[key])
    return body[key]


def parse_delivery(body: dict[str, Any], namespace: str) -> tuple[JSON, JSON, FullyQualifiedName | None]:
    """A rule's `retry` and `deadLetter` as saved (null or absent: None) and the dead-letter
    trigger it names (to authorise like the rule's own trigger). 400 naming the bad value."""
    retry = body.get("retry")
    if retry is not None:
        parse_retry(retry)
    dead_letter = body.get("deadLetter")
    target = None if dead_letter is None else parse_dead_letter(dead_letter, namespace)
    if target is not None and target.namespace != namespace:
        raise Forbidden(f"The supplied authentication is not authorized to access '{target.namespace}/{target.name}'.")
    return retry, dead_letter, target


def parse_shadow(body: dict[str, Any], old: bool) -> bool:
    """A rule's `shadow`: absent keeps the old value; else true or false."""
    if "shadow" not in body:
        return old
    if not isinstance(body["shadow"], bool):
        raise BadRequest(f"shadow {json.dumps(body['shadow'])[:100]} is not a boolean; send true (match and record, "
                         "run nothing) or false")
    return body["shadow"]


def parse_annotations(body: dict[str, Any], old: Parameters) -> Parameters:
    annotations = parse_params(body, "annotations", old)
    removed = body.get("delAnnotations") or []
    if not isinstance(removed, list) or not all(isinstance(key, str) for key in removed):
        raise BadRequest(f"delAnnotations malformed: expected an array of annotation keys (strings), "
                         f"got {json.dumps(removed)[:100]}")
    if removed:
        annotations = tuple(a for a in annotations if a.key not in set(removed))
    return annotations


def parse_entity_ref(ref: Any, namespace: str) -> FullyQualifiedName:
    try:
        if isinstance(ref, dict):
            path, name = str(ref.get("path") or namespace), str(ref.get("name"))
            path = namespace if path == "_" else path
            return FullyQualifiedName.from_path(path, name)
        if isinstance(ref, str):
            return FullyQualifiedName.parse(ref, namespace)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    raise BadRequest("rule requires a valid trigger and a valid action")


def check_sizes(entity: Entity, limits: LimitsConfig) -> None:
    """413 when an entity's parameters pass `limits.max_parameter_bytes` (the limit `GET
    /namespaces/_/limits` reports) or its annotations pass ANNOTATIONS_LIMIT_BYTES."""
    parameters = getattr(entity, "parameters", ())
    for field_name, values, limit in (("parameters", parameters, limits.max_parameter_bytes),
                                      ("annotations", entity.annotations, ANNOTATIONS_LIMIT_BYTES)):
        size = len(json.dumps([p.to_json() for p in values]).encode())
        if size > limit:
            raise PayloadTooLarge(f"{field_name} larger than allowed: {size} > {limit} bytes.")
