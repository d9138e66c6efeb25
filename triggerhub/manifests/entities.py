"""Turn a shape-checked manifest tree into REST PUT bodies, checking names and references.

Names resolve the way wskdeploy resolves them: an action named in a rule or sequence is looked
up in the same package first (`notify`), or given as `pkg/name` or `/namespace/pkg/name`.
Triggers and rules are namespace-level even when declared under a package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triggerhub.errors import BadRequest, PatternError, Problem
from triggerhub.manifests import params as P
from triggerhub.manifests.actions import auth_problem, build_action_body, build_sequence_body
from triggerhub.manifests.apis import api_entries, operation
from triggerhub.manifests.project import MANAGED_KEY, DesiredEntity, FeedSpec
from triggerhub.manifests.runtimes import HUB, Runtimes
from triggerhub.manifests.source import Source, YamlPath
from triggerhub.model import ApiRoute, Collection, is_valid_name

RoutingCheck = Callable[[str, Any], object]
"""Checks a rule's `filter`, `transform`, `retry` or `deadLetter` (the key says which), raising BadRequest
(PatternError for patterns, naming the clause). Given by
the caller (the CLI passes the hub's own compiler): this package never imports triggerhub.rules."""

ROUTED_RULE_KEYS = ("filter", "transform", "retry", "deadLetter")
"""A manifest rule's keys that go to the hub as written, each checked with `RoutingCheck`."""

DEFAULT_PACKAGE = "default"
_JSON_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]")


def json_path_parts(json_path: str) -> YamlPath:
    """`$.data.temp[0].numeric` -> ("data", "temp", 0, "numeric"); stops at what it cannot read."""
    parts: list[str | int] = []
    rest = json_path[1:] if json_path.startswith("$") else json_path
    while rest:
        found = _JSON_PATH_PART.match(rest)
        if found is None:
            break
        key, index, quoted = found.groups()
        parts.append(int(index) if index is not None else key if key is not None else json.loads(f'"{quoted}"'))
        rest = rest[found.end():]
    return tuple(parts)


_WHO = ("the hub and the identity come from --apihost/--auth (or ~/.wskprops); a manifest cannot switch them, "
        "so this is ignored")
# keys wskdeploy reads that this hub accepts but does not act on, and why (README "Manifests")
IGNORED_KEYS = {"namespace": _WHO, "credential": _WHO, "apiHost": _WHO, "apigwAccessToken": _WHO,
                "config": "the OpenAPI file for IBM's API gateway is not read; declare routes with 'apis:' (or "
                          "`triggerhub api create --config-file` for an OpenAPI file naming actions under x-openwhisk)",
                "rule": "wskdeploy's 'rule' pattern is ignored; give the rule a 'filter:' (an event pattern) to "
                        "match only some events"}
OwnerKey = tuple[str, str, str]  # (package, kind, entity name); kind "package" for package inputs


@dataclass(frozen=True, slots=True)
class Override:
    value: Any
    source: Source
    path: YamlPath


@dataclass(slots=True)
class Overrides:
    """Input values from the deployment file, keyed by owning entity then input name."""

    values: dict[OwnerKey, dict[str, Override]] = field(default_factory=dict)

    def add(self, owner: OwnerKey, key: str, value: Any, source: Source, path: YamlPath) -> None:
        self.values.setdefault(owner, {})[key] = Override(value, source, path)

    def of(self, owner: OwnerKey) -> dict[str, Override]:
        return self.values.get(owner, {})


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class _Index:
    """Every declared name, so references can be checked before any body is built."""

    actions: dict[str, set[str]] = field(default_factory=dict)  # package -> action and sequence names
    sequences: dict[str, set[str]] = field(default_factory=dict)
    triggers: dict[str, YamlPath] = field(default_factory=dict)
    rules: dict[str, YamlPath] = field(default_factory=dict)
    bindings: set[str] = field(default_factory=set)
    api_actions: dict[tuple[str, str], str] = field(default_factory=dict)  # (pkg, action) -> API name
    routes: dict[tuple[str, str, str], YamlPath] = field(default_factory=dict)  # (base, rel, verb) -> where


@dataclass(slots=True)
class EntityBuilder:
    source: Source
    namespace: str
    base_dir: Path
    overrides: Overrides
    cli_params: dict[str, str]
    managed: dict[str, Any] | None
    runtimes: Runtimes = HUB
    check_routing: RoutingCheck | None = None  # compiles a rule's filter/transform; None: the hub checks on PUT
    broken: set[YamlPath] = field(default_factory=set)  # entities with shape problems: not built
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # problems under --strict
    entities: list[DesiredEntity] = field(default_factory=list)
    routes: list[ApiRoute] = field(default_factory=list)
    _index: _Index = field(default_factory=_Index)
    _used_params: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ walk

    def build(self) -> None:
        self._warn_ignored(("project",), self.source.get(("project",)))
        packages = list(self._packages())
        if not packages:
            # wskdeploy: deploying a managed project with no packages deletes all the project owns
            if self.managed is None:
                self._problem((), "the manifest declares no packages; add 'packages:' or 'project: packages:' "
                                  "(or 'project: name:' with --managed to delete everything a project owns)")
            return
        for pkg, path, raw in packages:
            self._index_package(pkg, path, raw)
        for pkg, path, raw in packages:
            self._build_package(pkg, path, raw)
        for pkg, path, raw in packages:
            for name, entity_path, entity_raw in self._named(path, raw, "actions"):
                self._build_action(pkg, name, entity_path, entity_raw)
        self._build_sequences(packages)
        for pkg, path, raw in packages:
            for name, entity_path, entity_raw in self._named(path, raw, "triggers"):
                self._build_trigger(pkg, name, entity_path, entity_raw)
        for pkg, path, raw in packages:
            for name, entity_path, entity_raw in self._named(path, raw, "rules"):
                self._build_rule(pkg, name, entity_path, entity_raw)
        for pkg, path, raw in packages:
            self._build_apis(pkg, path, raw)
        for unused in sorted(set(self.cli_params) - self._used_params):
            self.warnings.append(Problem("--param", 1, 1, unused, "no input of that name in the manifest"))

    def _packages(self) -> Iterator[tuple[str, YamlPath, dict[str, Any]]]:
        seen: dict[str, YamlPath] = {}
        for root in (("project", "packages"), ("packages",)):
            for pkg, raw in _map(self.source.get(root)).items():
                path = root + (pkg,)
                if pkg in seen:
                    self._problem(path, f"package '{pkg}' is declared twice; also at {self._at(seen[pkg])}")
                    continue
                seen[pkg] = path
                self._warn_ignored(path, raw)
                for kind in ("actions", "triggers", "rules"):
                    for name, entity in _map(_map(raw).get(kind)).items():
                        self._warn_ignored(path + (kind, name), entity)
                yield pkg, path, _map(raw)

    def _named(self, pkg_path: YamlPath, pkg_raw: dict[str, Any], kind: str,
               *, with_broken: bool = False) -> Iterator[tuple[str, YamlPath, Any]]:
        for name, raw in _map(pkg_raw.get(kind)).items():
            if with_broken or pkg_path + (kind, name) not in self.broken:
                yield name, pkg_path + (kind, name), raw

    def _index_package(self, pkg: str, path: YamlPath, raw: dict[str, Any]) -> None:
        if pkg != DEFAULT_PACKAGE:
            self._check_name(pkg, path)
        names = self._index.actions.setdefault(pkg, set())
        for kind in ("actions", "sequences"):
            for name, entity_path, _ in self._named(path, raw, kind, with_broken=True):
                if name in names:
                    self._problem(entity_path, f"'{name}' is declared twice in package '{pkg}'")
                names.add(name)
                if kind == "sequences":
                    self._index.sequences.setdefault(pkg, set()).add(name)
        for kind, seen in (("triggers", self._index.triggers), ("rules", self._index.rules)):
            for name, entity_path, _ in self._named(path, raw, kind, with_broken=True):
                if name in seen:
                    self._problem(entity_path, f"{kind[:-1]} '{name}' is declared twice; also at "
                                               f"{self._at(seen[name])}")
                seen[name] = entity_path
        for name, _, _ in self._named(path, raw, "dependencies", with_broken=True):
            self._index.bindings.add(name)
        for entry in api_entries(path, raw):
            target_pkg, _, target = entry.action_ref.rpartition("/")
            self._index.api_actions[(target_pkg or pkg, target)] = entry.api_name
        if raw.get("feeds"):
            self._problem(path + ("feeds",), "'feeds' is not supported by triggerhub (wskdeploy ignores it too); "
                                             "declare feeds as triggers with 'feed:'")

    # ------------------------------------------------------------------ packages

    def _build_package(self, pkg: str, path: YamlPath, raw: dict[str, Any]) -> None:
        if pkg != DEFAULT_PACKAGE:
            body = {"publish": bool(raw.get("public", False)),
                    "parameters": self._inputs((pkg, "package", pkg), path, raw.get("inputs")),
                    "annotations": self._annotations(raw.get("annotations"))}
            self._add(Collection.PACKAGES, pkg, body, path)
        for name, dep_path, dep_raw in self._named(path, raw, "dependencies"):
            self._build_binding(pkg, name, dep_path, _map(dep_raw))

    def _build_binding(self, pkg: str, name: str, path: YamlPath, raw: dict[str, Any]) -> None:
        self._check_name(name, path)
        location = str(raw.get("location", ""))
        parts = location.strip("/").split("/")
        if not location.startswith("/") or len(parts) != 2 or not all(parts):
            self._problem(path + ("location",), f"dependency location '{location}' is not supported; use a "
                                                "package path /namespace/package (remote manifests are not "
                                                "fetched)")
            return
        namespace = self.namespace if parts[0] == "_" else parts[0]
        body = {"publish": False, "binding": {"namespace": namespace, "name": parts[1]},
                "parameters": self._inputs((pkg, "dependencies", name), path, raw.get("inputs")),
                "annotations": self._annotations(raw.get("annotations"))}
        self._add(Collection.PACKAGES, name, body, path)

    # ------------------------------------------------------------------ actions

    def _build_action(self, pkg: str, name: str, path: YamlPath, raw: Any) -> None:
        self._check_name(name, path)
        raw = self._web_for_api(pkg, name, path, _map(raw))
        body, problems, warnings = build_action_body(raw, self.base_dir, self.runtimes)
        for sub_path, message in problems:
            self._problem(path + sub_path, message)
        for sub_path, message in warnings:
            self._warn(path + sub_path, message)
        if body is None:
            return
        body["parameters"] = self._inputs((pkg, "actions", name), path, raw.get("inputs"))
        body["annotations"] = self._annotations(raw.get("annotations"), body["annotations"])
        self._add(Collection.ACTIONS, self._qualified(pkg, name), body, path)

    def _build_sequences(self, packages: list[tuple[str, YamlPath, dict[str, Any]]]) -> None:
        pending: list[tuple[str, str, YamlPath, list[tuple[str, str]]]] = []
        for pkg, pkg_path, raw in packages:
            for name, path, seq_raw in self._named(pkg_path, raw, "sequences"):
                self._check_name(name, path)
                seq_raw = self._web_for_api(pkg, name, path, _map(seq_raw))
                problem = auth_problem(seq_raw.get("annotations"))
                if problem is not None:
                    self._problem(path + ("annotations", "require-whisk-auth"), problem)
                    continue
                components = self._components(pkg, name, path, seq_raw)
                if components is not None:
                    pending.append((pkg, name, path, components))
        for pkg, name, path, components in self._sequence_order(pending):
            seq_raw = self._web_for_api(pkg, name, path, _map(self.source.get(path)), warn=False)
            body = build_sequence_body(seq_raw, [self._fqn(p, a) for p, a in components])
            body["annotations"] = self._annotations(seq_raw.get("annotations"), body["annotations"])
            self._add(Collection.ACTIONS, self._qualified(pkg, name), body, path, is_sequence=True)

    def _components(self, pkg: str, name: str, path: YamlPath, raw: dict[str, Any]) -> list[tuple[str, str]] | None:
        listed = [part.strip() for part in str(raw.get("actions", "")).split(",")]
        if not any(listed) or not all(listed):
            self._problem(path + ("actions",), f"'{raw.get('actions', '')}' is not a comma-separated list of "
                                               f"action names, e.g. \"first, second\"")
            return None
        resolved = []
        for ref in listed:
            target = self._action_ref(pkg, ref, path + ("actions",))
            if target == (pkg, name):
                self._problem(path + ("actions",), f"sequence '{name}' names itself; a sequence may not "
                                                   f"refer to itself")
                return None
            if target is not None:
                resolved.append(target)
        return resolved if len(resolved) == len(listed) else None

    def _sequence_order(self, pending: list[tuple[str, str, YamlPath, list[tuple[str, str]]]]
                        ) -> list[tuple[str, str, YamlPath, list[tuple[str, str]]]]:
        """Sequences that use other sequences come after them; a cycle is a problem."""
        by_key = {(pkg, name): item for item in pending for pkg, name in [item[:2]]}
        ordered: list[tuple[str, str, YamlPath, list[tuple[str, str]]]] = []
        state: dict[tuple[str, str], str] = {}

        def visit(key: tuple[str, str], trail: list[str]) -> None:
            if state.get(key) == "done":
                return
            if state.get(key) == "active":
                self._problem(by_key[key][2], "sequences form a cycle: " + " -> ".join(trail + [key[1]]))
                return
            state[key] = "active"
            for component in by_key[key][3]:
                if component in by_key:
                    visit(component, trail + [key[1]])
            state[key] = "done"
            ordered.append(by_key[key])

        for key in by_key:
            visit(key, [])
        return ordered

    # ------------------------------------------------------------------ API gateway routes

    def _build_apis(self, pkg: str, pkg_path: YamlPath, raw: dict[str, Any]) -> None:
        seen = self._index.routes
        for entry in api_entries(pkg_path, raw):
            found = operation(self.source, entry)
            if isinstance(found, str):
                self._problem(entry.path, found)
                continue
            target = self._action_ref(pkg, entry.action_ref, entry.path)
            key = (entry.base_path, entry.rel_path, found.verb)
            if target is None:
                continue
            if key in seen:
                self._problem(entry.path, f"route {found.verb} {entry.base_path}{entry.rel_path} is declared twice; "
                                          f"also at {self._at(seen[key])}")
                continue
            seen[key] = entry.path
            self.routes.append(ApiRoute(self.namespace, entry.base_path, entry.rel_path, found.verb,
                                        self._fqn(*target), found.response, entry.api_name,
                                        project=str((self.managed or {}).get("projectName") or "")))

    def _web_for_api(self, pkg: str, name: str, path: YamlPath, raw: dict[str, Any], *,
                     warn: bool = True) -> dict[str, Any]:
        """wskdeploy makes an action that an API route calls a web action, with a warning."""
        api_name = self._index.api_actions.get((pkg, name))
        web = raw.get("web", raw.get("web-export"))
        if api_name is None or str(web).lower() in ("true", "yes", "raw"):
            return raw
        if warn:
            self._warn(path, f"'{name}' is called by API '{api_name}' but is not a web action; made it one "
                             f"(web: true), as wskdeploy does")
        return {**raw, "web": True}

    # ------------------------------------------------------------------ triggers and rules

    def _build_trigger(self, pkg: str, name: str, path: YamlPath, raw: Any) -> None:
        self._check_name(name, path)
        raw = _map(raw)
        inputs = self._inputs((pkg, "triggers", name), path, raw.get("inputs"))
        annotations = self._annotations(raw.get("annotations"))
        feed = raw.get("feed")
        feed_spec = None
        if feed is not None:
            feed_fqn = self._feed_fqn(str(feed), path + ("feed",))
            if feed_fqn is None:
                return
            feed_spec = FeedSpec(feed_fqn, {p["key"]: p["value"] for p in inputs})
            inputs = []  # like `wsk trigger create --feed`: inputs go to the feed, not the trigger
            annotations = [a for a in annotations if a["key"] != "feed"] + [{"key": "feed", "value": feed_fqn}]
        body: dict[str, Any] = {"publish": False, "parameters": inputs, "annotations": annotations}
        if isinstance(raw.get("derive"), dict):
            body["derive"] = self._derive(raw["derive"])
        self._add(Collection.TRIGGERS, name, body, path, feed=feed_spec)

    def _derive(self, derive: dict[str, Any]) -> dict[str, Any]:
        """Source triggers named as in rules (a trigger of this manifest, or /ns/name), fully
        qualified so that the plan compares them with what the hub shows; the rest is the hub's to check."""
        def qualified(name: Any) -> Any:
            return f"/{self.namespace}/{name}" if isinstance(name, str) and not name.startswith("/") else name
        sources = derive.get("from")
        return {**derive, "from": [qualified(s) for s in sources] if isinstance(sources, list) else qualified(sources)}

    def _feed_fqn(self, feed: str, path: YamlPath) -> str | None:
        parts = feed.strip("/").split("/")
        if feed.startswith("/") and len(parts) == 3 and all(parts):
            namespace = self.namespace if parts[0] == "_" else parts[0]
            return f"/{namespace}/{parts[1]}/{parts[2]}"
        if not feed.startswith("/") and len(parts) == 2 and all(parts):
            return f"/{self.namespace}/{parts[0]}/{parts[1]}"
        self._problem(path, f"feed '{feed}' is not a feed action name; use /namespace/package/feed "
                            f"(e.g. /whisk.system/alarms/alarm) or <dependency>/<feed>")
        return None

    def _build_rule(self, pkg: str, name: str, path: YamlPath, raw: Any) -> None:
        self._check_name(name, path)
        raw = _map(raw)
        trigger = str(raw.get("trigger", ""))
        if trigger.startswith("/"):
            trigger_fqn = trigger
        elif trigger in self._index.triggers:
            trigger_fqn = f"/{self.namespace}/{trigger}"
        else:
            known = ", ".join(sorted(self._index.triggers)) or "(none)"
            self._problem(path + ("trigger",), f"unknown trigger '{trigger}'; known: {known}")
            trigger_fqn = None
        action = self._action_ref(pkg, str(raw.get("action", "")), path + ("action",))
        if trigger_fqn is None or action is None:
            return
        body = {"trigger": trigger_fqn, "action": self._fqn(*action), "publish": False,
                "annotations": self._annotations(raw.get("annotations"))}
        for key in ROUTED_RULE_KEYS:
            if raw.get(key) is not None:
                self._check_routing(key, raw[key], path + (key,))
                body[key] = raw[key]
        if raw.get("shadow"):
            body["shadow"] = True
        self._add(Collection.RULES, name, body, path)

    def _check_routing(self, key: str, value: Any, path: YamlPath) -> None:
        """A bad pattern is reported at the offending clause's own line and column."""
        if self.check_routing is None:
            return
        try:
            self.check_routing(key, value)
        except PatternError as exc:
            self._problem(path + json_path_parts(exc.path), exc.message)
        except BadRequest as exc:  # a bad `retry` or `deadLetter`: the message names the key and value
            self._problem(path, exc.message)

    def _action_ref(self, pkg: str, ref: str, path: YamlPath) -> tuple[str, str] | None:
        """(package, name) of an action or sequence reference; `/ns/...` refers outside the manifest."""
        if ref.startswith("/"):
            parts = ref.strip("/").split("/")
            if len(parts) in (2, 3) and all(parts):
                return ("/" + "/".join(parts[:-1]), parts[-1])
            self._problem(path, f"'{ref}' is not an action name; use name, package/name or "
                                f"/namespace/package/name")
            return None
        target_pkg, _, target = ref.rpartition("/")
        target_pkg = target_pkg or pkg
        if target_pkg not in self._index.actions:
            return (target_pkg, target)  # a binding or a package already on the hub: the hub checks it
        known = self._index.actions[target_pkg]
        if target not in known:
            self._problem(path, f"unknown action '{ref}'; known: {', '.join(sorted(known)) or '(none)'}")
            return None
        return (target_pkg, target)

    # ------------------------------------------------------------------ helpers

    def _inputs(self, owner: OwnerKey, path: YamlPath, raw: Any) -> list[dict[str, Any]]:
        values: dict[str, Any] = {}
        declared: dict[str, str | None] = {}
        for key, value in _map(raw).items():
            try:
                resolved = P.resolve(value)
            except P.ParamTypeError as exc:
                self._problem(path + ("inputs", key), str(exc))
                continue
            values[key], declared[key] = resolved.value, resolved.declared_type
            if resolved.note is not None:
                self._warn(path + ("inputs", key), resolved.note)
        for key, override in self.overrides.of(owner).items():
            try:
                given = P.resolve(override.value).value
            except P.ParamTypeError as exc:
                self.problems.append(override.source.problem(override.path, str(exc)))
                continue
            values[key], note = P.coerce(given, declared.get(key))
            if note is not None:
                self.warnings.append(override.source.problem(override.path, note))
        for key in values:
            if key in self.cli_params:
                self._used_params.add(key)
                values[key], note = _cli_value(self.cli_params[key], declared.get(key))
                if note is not None:
                    self.warnings.append(Problem("--param", 1, 1, key, note))
        return [{"key": k, "value": v} for k, v in values.items()]

    def _annotations(self, raw: Any, computed: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        merged = {k: v for k, v in _map(raw).items()}
        for item in computed or []:
            merged[item["key"]] = item["value"]
        if self.managed is not None:
            merged[MANAGED_KEY] = dict(self.managed)
        return [{"key": k, "value": v} for k, v in merged.items()]

    def _add(self, collection: Collection, name: str, body: dict[str, Any], path: YamlPath,
             feed: FeedSpec | None = None, *, is_sequence: bool = False) -> None:
        self.entities.append(DesiredEntity(collection, name, body, self._at(path), feed, is_sequence))

    def _qualified(self, pkg: str, name: str) -> str:
        return name if pkg == DEFAULT_PACKAGE else f"{pkg}/{name}"

    def _fqn(self, pkg: str, name: str) -> str:
        if pkg.startswith("/"):
            return f"{pkg}/{name}"
        return f"/{self.namespace}/{name}" if pkg == DEFAULT_PACKAGE else f"/{self.namespace}/{pkg}/{name}"

    def _check_name(self, name: str, path: YamlPath) -> None:
        if not is_valid_name(name):
            self._problem(path, f"'{name}' is not a valid name; use letters, digits, '_', '@', '.', '&', '-' "
                                f"and inner spaces, at most 256 characters")

    def _problem(self, path: YamlPath, message: str) -> None:
        self.problems.append(self.source.problem(path, message))

    def _warn_ignored(self, path: YamlPath, raw: Any) -> None:
        for key in (k for k in IGNORED_KEYS if k in _map(raw)):
            if key != "rule" or path[-2:-1] == ("rules",):
                self._warn(path + (key,), f"'{key}' is not supported: {IGNORED_KEYS[key]}")

    def _warn(self, path: YamlPath, message: str) -> None:
        self.warnings.append(self.source.problem(path, message))

    def _at(self, path: YamlPath) -> str:
        line, column = self.source.where(path)
        return f"{self.source.file}:{line}:{column}"


def _cli_value(text: str, declared: str | None) -> tuple[Any, str | None]:
    """--param values are text; a declared type converts them, else JSON literals are honoured."""
    if declared is not None:
        return P.coerce(text, declared)
    try:
        return json.loads(text), None
    except ValueError:
        return text, None
