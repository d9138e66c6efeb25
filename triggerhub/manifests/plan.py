"""Desired entities vs what the hub has -> a Plan of creates, updates (with field diffs), deletes.

Pure: the current state arrives as a Snapshot gathered by apply.py. Entities are compared in a
flat "view" (`exec.code`, `parameters.threshold`, `annotations.web-export`, ...) that leaves out
what the server adds on its own (the `exec` and `provide-api-key` annotations, `binary`, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from triggerhub.manifests import routes as R
from triggerhub.manifests.project import APPLY_ORDER, MANAGED_KEY, DesiredEntity, Project
from triggerhub.model import JSON, ApiRoute, Collection

EntityKey = tuple[Collection, str]
SERVER_ANNOTATIONS = frozenset({"exec", "provide-api-key", "binding"})
SECRET_MASK = "********"  # how feeds show secrets in READ (whole values, or the password inside a URL)


def _masked(value: object) -> bool:
    return isinstance(value, str) and SECRET_MASK in value
# change with every edit of the file / with the directory deploy runs from: not worth an update
VOLATILE_MANAGED_KEYS = frozenset({"projectHash", "file"})


class Change(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class FieldDiff:
    field: str
    old: JSON
    new: JSON

    def __str__(self) -> str:
        return f"{self.field}: {_short(self.old)} -> {_short(self.new)}"


@dataclass(frozen=True, slots=True)
class Step:
    change: Change
    collection: Collection
    name: str
    desired: DesiredEntity | None = None
    current: JSON = None  # the entity as GET returned it (None for creates)
    current_feed_inputs: dict[str, JSON] | None = None  # feed READ config, when it could be read
    diffs: tuple[FieldDiff, ...] = ()

    @property
    def kind_word(self) -> str:
        if self.desired is not None:
            return self.desired.kind_word
        if self.collection is Collection.ACTIONS and (self.current or {}).get("exec", {}).get("kind") == "sequence":
            return "sequence"
        return self.collection.value.rstrip("s")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the hub has: docs of every desired or project-owned entity, and feed configs."""

    docs: dict[EntityKey, JSON] = field(default_factory=dict)
    feed_inputs: dict[str, dict[str, JSON]] = field(default_factory=dict)  # trigger name -> config
    owned: frozenset[EntityKey] = frozenset()  # carry this project's whisk-managed annotation
    routes: tuple[ApiRoute, ...] = ()  # the namespace's API gateway routes


@dataclass(frozen=True, slots=True)
class RouteStep:
    change: Change
    route: ApiRoute  # the desired route (create, update) or the one to delete
    current: ApiRoute | None = None  # what an update or delete replaces, for rollback


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    unchanged: tuple[EntityKey, ...] = ()
    notes: tuple[str, ...] = ()
    route_steps: tuple[RouteStep, ...] = ()  # route deletes run before entity steps, the rest after
    routes_unchanged: int = 0

    def of(self, change: Change) -> list[Step]:
        return [s for s in self.steps if s.change is change]

    def count(self, change: Change) -> int:
        return len(self.of(change)) + sum(1 for s in self.route_steps if s.change is change)

    @property
    def empty(self) -> bool:
        return not self.steps and not self.route_steps

    def render(self) -> list[str]:
        lines = []
        for step in self.steps:
            lines.append(f"{step.change.value:<7} {step.kind_word:<8} {step.name}")
            lines.extend(f"          {diff}" for diff in step.diffs)
        lines.extend(f"{r.change.value:<7} {'route':<8} {R.describe(r.route)}" for r in self.route_steps)
        lines.append(f"{self.count(Change.CREATE)} to create, {self.count(Change.UPDATE)} to update, "
                     f"{self.count(Change.DELETE)} to delete, {len(self.unchanged) + self.routes_unchanged} unchanged")
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


def plan_deploy(project: Project, snapshot: Snapshot) -> Plan:
    steps: list[Step] = []
    unchanged: list[EntityKey] = []
    notes: list[str] = []
    for entity in project.entities:
        current = snapshot.docs.get(entity.key)
        if current is None:
            steps.append(Step(Change.CREATE, entity.collection, entity.name, entity))
            continue
        feed_inputs = snapshot.feed_inputs.get(entity.name) if entity.feed else None
        diffs = diff_entity(entity, current, feed_inputs)
        if entity.feed is not None and feed_inputs is None and entity.name not in snapshot.feed_inputs:
            notes.append(f"trigger {entity.name}: the feed did not return its configuration; feed inputs "
                         f"were not compared")
        if diffs:
            steps.append(Step(Change.UPDATE, entity.collection, entity.name, entity, current, feed_inputs,
                              tuple(diffs)))
        else:
            unchanged.append(entity.key)
    wanted = {e.key for e in project.entities}
    stale = [key for key in snapshot.owned if key not in wanted] if project.managed else []
    steps.extend(_deletes(stale, snapshot))
    route_steps, routes_unchanged = _route_changes(project, snapshot)
    return Plan(tuple(steps), tuple(unchanged), tuple(notes), route_steps, routes_unchanged)


def _route_changes(project: Project, snapshot: Snapshot) -> tuple[tuple[RouteStep, ...], int]:
    current = list(snapshot.routes)
    wanted = {route.key for route in project.routes}
    steps = [RouteStep(Change.DELETE, route, route) for route in _owned_routes(project, current)
             if route.key not in wanted]
    unchanged = 0
    for route in project.routes:
        have = R.find(current, route.key)
        if have is not None and R.same(have, route):
            unchanged += 1
        else:
            steps.append(RouteStep(Change.CREATE if have is None else Change.UPDATE, route, have))
    return tuple(steps), unchanged


def _owned_routes(project: Project, current: list[ApiRoute]) -> list[ApiRoute]:
    return [r for r in current if project.managed and project.name and r.project == project.name]


def plan_undeploy(project: Project, snapshot: Snapshot) -> Plan:
    """Managed: everything carrying the project's annotation. Otherwise: what the manifest declares."""
    current = list(snapshot.routes)
    if project.managed:
        keys = list(snapshot.owned)
        doomed = _owned_routes(project, current)
    else:
        keys = [e.key for e in project.entities if e.key in snapshot.docs]
        doomed = [r for r in (R.find(current, route.key) for route in project.routes) if r is not None]
    route_steps = tuple(RouteStep(Change.DELETE, route, route) for route in doomed)
    return Plan(tuple(_deletes(keys, snapshot)), route_steps=route_steps)


def _deletes(keys: list[EntityKey], snapshot: Snapshot) -> list[Step]:
    def order(key: EntityKey) -> tuple[int, int, str]:
        doc = snapshot.docs.get(key) or {}
        is_sequence = doc.get("exec", {}).get("kind") == "sequence"
        # reverse apply order; sequences go before the actions they use
        return (-APPLY_ORDER.index(key[0]), 0 if is_sequence else 1, key[1])

    return [Step(Change.DELETE, collection, name, None, snapshot.docs.get((collection, name)),
                 snapshot.feed_inputs.get(name) if collection is Collection.TRIGGERS else None)
            for collection, name in sorted(keys, key=order)]


# --------------------------------------------------------------------------- views and diffs


def diff_entity(entity: DesiredEntity, current: JSON, feed_inputs: dict[str, JSON] | None) -> list[FieldDiff]:
    want = view(entity.collection, entity.body, entity.body)
    have = view(entity.collection, current, entity.body)
    if entity.collection is Collection.PACKAGES and entity.body.get("binding"):
        # GET on a binding returns the bound package's parameters merged in: compare declared keys only
        have = {k: v for k, v in have.items() if not k.startswith("parameters.") or k in want}
    if entity.feed is not None and feed_inputs is not None:
        # only what the feed reports back can be compared; masked secrets cannot
        known = [k for k in entity.feed.inputs if k in feed_inputs and not _masked(feed_inputs[k])]
        want.update({f"feed.{k}": entity.feed.inputs[k] for k in known})
        have.update({f"feed.{k}": feed_inputs[k] for k in known})
    return [FieldDiff(key, have.get(key), want.get(key))
            for key in sorted(set(want) | set(have)) if have.get(key) != want.get(key)]


def view(collection: Collection, doc: JSON, desired: dict[str, Any]) -> dict[str, JSON]:
    """Flat comparable fields of a PUT body or a GET doc, shaped by what the manifest declares."""
    doc = doc or {}
    out: dict[str, JSON] = {"publish": bool(doc.get("publish", False))}
    declared_annotations = {a["key"] for a in desired.get("annotations", [])}
    for item in doc.get("annotations") or []:
        key, value = item["key"], item.get("value")
        if key in SERVER_ANNOTATIONS and key not in declared_annotations:
            continue
        if key == MANAGED_KEY and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in VOLATILE_MANAGED_KEYS}
        out[f"annotations.{key}"] = value
    is_sequence = desired.get("exec", {}).get("kind") == "sequence"
    if collection is not Collection.RULES and not is_sequence:
        for item in doc.get("parameters") or []:
            out[f"parameters.{item['key']}"] = item.get("value")
    if collection is Collection.ACTIONS:
        out.update(_exec_view(doc.get("exec") or {}, desired.get("exec") or {}))
        limits = doc.get("limits") or {}
        out.update({f"limits.{k}": limits.get(k) for k in (desired.get("limits") or {})})
    if collection is Collection.TRIGGERS and (doc.get("derive") or desired.get("derive")):
        out["derive"] = doc.get("derive")
    if collection is Collection.RULES:
        out["trigger"] = _fqn(doc.get("trigger"))
        out["action"] = _fqn(doc.get("action"))
        out.update({key: doc[key] for key in ("filter", "transform", "retry", "deadLetter") if doc.get(key) is not None})
        if doc.get("shadow"):
            out["shadow"] = True
    if collection is Collection.PACKAGES:
        binding = doc.get("binding") or {}
        out["binding"] = f"/{binding['namespace']}/{binding['name']}" if binding else None
    return out


def _exec_view(exec_doc: dict[str, Any], desired: dict[str, Any]) -> dict[str, JSON]:
    out = {"exec.kind": exec_doc.get("kind")}
    if exec_doc.get("kind") == "sequence" or desired.get("kind") == "sequence":
        out["exec.components"] = list(exec_doc.get("components") or [])
        return out
    out["exec.code"] = exec_doc.get("code")
    out["exec.image"] = exec_doc.get("image")
    if "main" in desired:  # the server may fill in a default entry point
        out["exec.main"] = exec_doc.get("main")
    return out


def _fqn(value: JSON) -> str | None:
    if isinstance(value, dict):
        return f"/{value.get('path')}/{value.get('name')}"
    if isinstance(value, str):
        return value if value.startswith("/") else f"/{value}"
    return None


def _short(value: JSON) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    if isinstance(value, str) and ("\n" in value or len(value) > 60):
        return f"<{len(value)} chars>"
    return text if len(text) <= 60 else text[:57] + "..."
