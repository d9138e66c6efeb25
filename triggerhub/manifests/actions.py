"""Action and sequence PUT bodies from their manifest entries: exec, limits and web annotations.

Returns problems as (sub-path, message) pairs so the caller can position them in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from triggerhub.manifests.runtimes import (
    DOCKER_SKELETON,
    CodeError,
    Packing,
    Runtimes,
    infer_kind,
    read_function,
    read_packed,
    resolve_kind,
)
from triggerhub.model import ActionLimits

SubProblem = tuple[tuple[str, ...], str]

# manifest key -> (REST key, minimum, maximum); reference/openwhisk.md sections 1.5 and 2.2
LIMIT_RANGES = {"timeout": ("timeout", 100, 300_000), "memorySize": ("memory", 128, 512),
                "logSize": ("logs", 0, 10)}
UNSUPPORTED_LIMITS = ("concurrentActivations", "userInvocationRate", "codeSize", "parameterSize")
MAX_AUTH_INT = 2**53 - 1


def web_annotations(value: Any) -> list[dict[str, Any]]:
    """wskdeploy webaction.go: true/yes -> export, raw -> export + raw-http, false/no -> all off."""
    text = str(value).lower()
    export = text in ("true", "yes", "raw")
    return [{"key": "web-export", "value": export}, {"key": "raw-http", "value": text == "raw"},
            {"key": "final", "value": export}]


def build_action_body(raw: dict[str, Any], base_dir: Path, runtimes: Runtimes
                      ) -> tuple[dict[str, Any] | None, list[SubProblem], list[SubProblem]]:
    """(body or None, problems, warnings); both lists hold (sub-path, message) pairs."""
    problems: list[SubProblem] = []
    warnings: list[SubProblem] = []
    exec_doc = _exec(raw, base_dir, runtimes, problems, warnings)
    limits = _limits(raw.get("limits"), problems, warnings)
    annotations = _action_annotations(raw, problems)
    if exec_doc is None or problems:
        return None, problems, warnings
    body = {"exec": exec_doc, "limits": limits, "annotations": annotations, "publish": False}
    return body, problems, warnings


def build_sequence_body(raw: dict[str, Any], components: list[str]) -> dict[str, Any]:
    annotations = []
    web = raw.get("web", raw.get("web-export"))
    if web is not None:
        annotations = web_annotations(web)
    return {"exec": {"kind": "sequence", "components": components}, "annotations": annotations,
            "publish": False}


def _exec(raw: dict[str, Any], base_dir: Path, runtimes: Runtimes, problems: list[SubProblem],
          warnings: list[SubProblem]) -> dict[str, Any] | None:
    runtime = raw.get("runtime")
    kind_key = raw.get("kind")
    if runtime and kind_key and runtime != kind_key:
        problems.append((("kind",), f"'runtime: {runtime}' and 'kind: {kind_key}' disagree; keep one"))
        return None
    runtime = runtime or kind_key
    function, code, docker = raw.get("function"), raw.get("code"), raw.get("docker")
    location = raw.get("location")
    if location is not None:
        if function is not None and function != location:
            problems.append((("location",), f"'location: {location}' and 'function: {function}' disagree; "
                                            f"keep 'function' ('location' is its deprecated alias)"))
            return None
        warnings.append((("location",), "'location' is deprecated; rename it to 'function'"))
        function = location
    if function is not None and code is not None:
        problems.append((("code",), "'function' and 'code' cannot both be set; keep one"))
        return None
    if raw.get("native") is True and docker is None:
        docker = DOCKER_SKELETON
    if function is None and code is None and docker is None:
        problems.append(((), "an action needs 'function' (a file, folder or .zip), inline 'code' with "
                             "'runtime', or a 'docker' image"))
        return None
    try:
        doc, note = _exec_doc(raw, base_dir, runtimes, runtime, function, code, docker)
    except CodeError as exc:
        key = exc.key or ("runtime" if raw.get("runtime") else "kind" if raw.get("kind") else
                          "location" if function is not None and raw.get("function") is None else
                          "function" if function is not None else "code")
        problems.append(((key,), str(exc)))
        return None
    if note is not None:
        warnings.append((("runtime",) if raw.get("runtime") else ("kind",), note))
    return doc


def _exec_doc(raw: dict[str, Any], base_dir: Path, runtimes: Runtimes, runtime: str | None, function: str | None,
              code: str | None, docker: str | None) -> tuple[dict[str, Any], str | None]:
    packing = Packing.parse(raw.get("include"), raw.get("exclude"))
    note = None
    function_key = "function" if raw.get("function") is not None else "location"
    if function is not None:
        path = base_dir / function
        if packing:
            if function.lower().endswith(".zip") and not path.is_file() and not path.with_suffix("").is_dir() \
                    and not packing.include:
                raise CodeError(f"'{function}' does not exist in {base_dir}, nor a folder '{function[:-4]}' to "
                                f"build it from; 'function' is relative to the manifest's folder", key=function_key)
            loaded = read_packed(path, base_dir, packing)
        elif not path.exists():
            raise CodeError(f"file '{function}' does not exist in {base_dir}; 'function' is relative to the "
                            f"manifest's folder", key=function_key)
        else:
            loaded = read_function(path)
        text, binary, extension = loaded.text, loaded.binary, loaded.extension
    else:
        text, binary, extension = code or "", False, ""
    doc: dict[str, Any]
    if docker is not None:
        doc = {"kind": "blackbox", "image": docker, "binary": binary}
        if function is not None or code is not None:
            doc["code"] = text
    else:
        if runtime is None and (code is not None or extension in ("", ".zip")):
            what = "inline 'code'" if code is not None else f"'function: {function}'"
            raise CodeError(f"{what} needs 'runtime', one this hub runs: {', '.join(runtimes.kinds)}")
        if runtime:
            chosen = resolve_kind(runtime, extension, runtimes)
            kind, note = chosen.kind, chosen.note
        else:
            kind = infer_kind(extension, runtimes)
        doc = {"kind": kind, "code": text, "binary": binary}
    if raw.get("main"):
        doc["main"] = raw["main"]
    return doc, note


def _limits(raw: Any, problems: list[SubProblem], warnings: list[SubProblem]) -> dict[str, int]:
    limits = ActionLimits().to_json()
    for key, value in (raw or {}).items():
        if key in UNSUPPORTED_LIMITS:
            warnings.append((("limits", key), f"limits.{key} is not supported by OpenWhisk and is ignored"))
            continue
        rest_key, low, high = LIMIT_RANGES[key]
        if not low <= value <= high:
            problems.append((("limits", key), f"{value} is out of range; allowed: {low}..{high}"))
            continue
        limits[rest_key] = value
    return limits


def _action_annotations(raw: dict[str, Any], problems: list[SubProblem]) -> list[dict[str, Any]]:
    """Computed annotations (web, conductor); the caller merges them over the user's annotations."""
    out: list[dict[str, Any]] = []
    web = raw.get("web", raw.get("web-export"))
    if web is not None:
        out += web_annotations(web)
    if raw.get("conductor") is True:
        out.append({"key": "conductor", "value": True})
    problem = auth_problem(raw.get("annotations"))
    if problem is not None:
        problems.append((("annotations", "require-whisk-auth"), problem))
    return out


def auth_problem(annotations: Any) -> str | None:
    """What is wrong with a declared `require-whisk-auth` annotation (actions and sequences)."""
    declared = annotations if isinstance(annotations, dict) else {}
    if "require-whisk-auth" not in declared or _valid_auth(declared["require-whisk-auth"]):
        return None
    auth = declared["require-whisk-auth"]
    shown = "no value" if auth is None else f"'{auth}'"
    return f"{shown} is not allowed; use true, false, a non-empty string or an integer 1..{MAX_AUTH_INT}"


def _valid_auth(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 1 <= value <= MAX_AUTH_INT
    return isinstance(value, str) and bool(value)
