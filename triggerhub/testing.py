"""Routing tests without a server: a pytest plugin (entry point `pytest11: triggerhub`).

The fixture `triggerhub_routes` loads a wskdeploy manifest and answers
`route(trigger, event) -> [(rule, params)]` with the hub's own compiled filters and transforms
(triggerhub.rules), so a test proves which rules an event reaches and what their actions get.
It sits beside the CLI at the top of the import layers: it composes manifests, rules and engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from triggerhub.engine.explain import event_from_body
from triggerhub.errors import BadRequest
from triggerhub.manifests.loader import find_manifest, load_project
from triggerhub.manifests.project import Project
from triggerhub.model import (
    Collection, FullyQualifiedName, ReducedRule, RuleStatus, Trigger, TriggerEvent, params_from_json,
)
from triggerhub.rules.events import MQTT_MESSAGE_TYPE
from triggerhub.rules.match import CompiledRules, compile_routing, compile_rules, route

NAMESPACE = "_"


@dataclass(frozen=True, slots=True)
class Routes:
    """A manifest's triggers with their rules compiled; every rule as deployed: active."""

    project: Project
    compiled: dict[str, CompiledRules]  # trigger name -> its rules
    triggers: dict[str, Trigger]

    def route(self, trigger: str, event: TriggerEvent | Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(rule name, parameters its action gets over the action's own) for each rule `event`
        reaches (a shadow rule runs nothing, so it is not listed). `event` is a TriggerEvent or an
        explain-style body: {"data": ..., "type"?, ...}."""
        found = self.triggers.get(trigger)
        if found is None:
            raise KeyError(f"trigger {trigger!r} is not in {self.project.file}; known: {', '.join(sorted(self.triggers))}")
        if not isinstance(event, TriggerEvent):
            event = event_from_body(dict(event), found.fqn)
        routing = route(self.compiled[trigger], event)
        trigger_params = {p.key: p.value for p in found.parameters}
        out = []
        for match in routing.matched:
            if match.error is not None:
                raise BadRequest(f"rule {match.rule}: {match.error}")
            if match.shadow:
                continue
            out.append((match.rule.rpartition("/")[2], {**trigger_params, **match.params}))
        return out


def load_routes(manifest: str | Path, *, params: Mapping[str, str] | None = None,
                env: Mapping[str, str] | None = None) -> Routes:
    """Load and validate `manifest` (a file or a folder holding manifest.yaml) as `triggerhub
    validate` does; ManifestError lists every problem with file:line:column."""
    path = Path(manifest)
    project = load_project(find_manifest(path) if path.is_dir() else path, params=params, env=env,
                           namespace=NAMESPACE, check_routing=compile_routing)
    triggers: dict[str, Trigger] = {}
    for entity in project.entities:
        if entity.collection is Collection.TRIGGERS:
            triggers[entity.name] = Trigger(NAMESPACE, entity.name,
                                            parameters=params_from_json(entity.body.get("parameters")))
    for entity in project.entities:
        if entity.collection is Collection.RULES:
            trigger_name = FullyQualifiedName.parse(entity.body["trigger"], NAMESPACE).name
            if trigger_name not in triggers:
                continue  # a trigger outside the manifest: nothing here fires it
            action = FullyQualifiedName.parse(entity.body["action"], NAMESPACE)
            link = ReducedRule(action, RuleStatus.ACTIVE, entity.body.get("filter"), entity.body.get("transform"),
                               shadow=bool(entity.body.get("shadow")))
            triggers[trigger_name].rules[f"{NAMESPACE}/{entity.name}"] = link
    return Routes(project, {name: compile_rules(t) for name, t in triggers.items()}, triggers)


def mqtt_event(topic: str, payload: Any, *, qos: int = 1, retain: bool = False) -> dict[str, Any]:
    """An MQTT message as the hub's MQTT feed turns it into a trigger event, for `route`."""
    return {"type": MQTT_MESSAGE_TYPE, "subject": topic, "source": "mqtt://test", "data": {
        "topic": topic, "qos": qos, "retain": retain, "timestamp": 0, "payload": payload, "properties": {}}}


@pytest.fixture
def triggerhub_routes() -> Callable[..., Routes]:
    """`triggerhub_routes("manifests/iot-temperature-alert").route("temperature-reading", event)`."""
    return load_routes
