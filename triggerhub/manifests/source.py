"""Read one YAML file into plain data plus a position index (line/column of every key and value).

Environment substitution ($VAR, ${VAR}, $${VAR}) is applied to every string scalar and mapping
key while reading, so later stages see final names and still know where each one came from.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning

from triggerhub.errors import ManifestError, Problem

YamlPath: TypeAlias = tuple[str | int, ...]

_DUPLICATE_RE = re.compile(r'found duplicate key "([^"]*)"')
_ENV_RE = re.compile(r"\$\$\{(\w+)\}|\$\{(\w+)\}|\$(\w+)")


def substitute(text: str, env: Mapping[str, str]) -> str:
    """wskdeploy interpolation: $VAR and ${VAR} from env (missing -> ""), $${VAR} -> literal ${VAR}."""

    def one(match: re.Match[str]) -> str:
        escaped, braced, bare = match.groups()
        if escaped is not None:
            return "${" + escaped + "}"
        return env.get(braced or bare, "")

    return _ENV_RE.sub(one, text)


def dotted(path: YamlPath) -> str:
    """`packages.iot.actions.notify.inputs` (list indexes as `[0]`)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "<root>"


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed YAML document. `positions` maps a YAML path to the 1-based (line, column) of its key."""

    file: str
    data: Any
    positions: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    text: str = ""

    def where(self, path: YamlPath) -> tuple[int, int]:
        """Position of `path`, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            found = self.positions.get(path[:cut])
            if found is not None:
                return found
        return (1, 1)

    def problem(self, path: YamlPath, message: str) -> Problem:
        line, column = self.where(path)
        return Problem(self.file, line, column, dotted(path), message)

    def get(self, path: YamlPath, default: Any = None) -> Any:
        node = self.data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return default
        return node


def read_source(path: Path, display_name: str, env: Mapping[str, str]) -> Source:
    """Parse `path`; a syntax error or duplicate key becomes a ManifestError with its position."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError([Problem(display_name, 1, 1, "<root>", f"cannot read file: {exc.strerror}")]) from exc
    return parse_source(text, display_name, env)


def parse_source(text: str, display_name: str, env: Mapping[str, str]) -> Source:
    yaml = YAML(typ="rt", pure=True)
    try:
        with warnings.catch_warnings():
            # YAML lets a later anchor of the same name replace an earlier one; ruamel only warns
            warnings.simplefilter("ignore", ReusedAnchorWarning)
            raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        reason = (exc.problem or exc.context or "invalid YAML").strip()
        duplicate = _DUPLICATE_RE.match(reason)
        if duplicate:
            reason = f"duplicate key '{duplicate.group(1)}'; each key may appear only once in a mapping"
        raise ManifestError([Problem(display_name, line, column, "<root>", f"invalid YAML: {reason}")]) from exc
    positions: dict[YamlPath, tuple[int, int]] = {(): (1, 1)}
    data = _plain(raw, (), positions, env)
    if data is None:
        data = {}
    return Source(display_name, data, positions, text)


def _verbatim(path: YamlPath) -> bool:
    """A rule's `filter` and `transform` are event patterns and templates: `$or` and `$.data.x`
    there are theirs, so no environment substitution inside them."""
    return len(path) >= 3 and path[-3] == "rules" and path[-1] in ("filter", "transform")


def _key_text(key: Any) -> str:
    if key is None:
        return ""
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _plain(node: Any, path: YamlPath, positions: dict[YamlPath, tuple[int, int]],
           env: Mapping[str, str] | None) -> Any:
    """`env` None: keep strings as written (inside a rule's filter or transform)."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            # Manifest keys are names: a number or boolean key (`1: x`) is read as its text and a null
            # key (`~: x`) as "", so later checks report an unknown key or a bad name at its position.
            text = key if isinstance(key, str) else _key_text(key)
            name = substitute(text, env) if env is not None else text
            line, column = node.lc.key(key)
            positions[path + (name,)] = (line + 1, column + 1)
            out[name] = _plain(value, path + (name,), positions, None if _verbatim(path + (name,)) else env)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            line, column = node.lc.item(index)
            positions[path + (index,)] = (line + 1, column + 1)
            items.append(_plain(value, path + (index,), positions, env))
        return items
    if isinstance(node, str):
        return substitute(str(node), env) if env is not None else str(node)
    if isinstance(node, bool | int | float) or node is None:
        # ruamel's ScalarFloat/ScalarInt/ScalarBoolean subclass the builtins; return plain values
        if isinstance(node, bool):
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return None
    return str(node)  # timestamps and other YAML tags: keep their text
