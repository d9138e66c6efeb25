"""The typed result of loading a manifest: the entities it wants, each as its REST PUT body.

`Project.entities` is in apply order (packages, actions, sequences, triggers, rules); deletes run
in the reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triggerhub.model import JSON, ApiRoute, Collection

MANAGED_KEY = "whisk-managed"
APPLY_ORDER = (Collection.PACKAGES, Collection.ACTIONS, Collection.TRIGGERS, Collection.RULES)


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """A trigger's feed: the feed action's FQN (`/whisk.system/alarms/alarm`) and its inputs."""

    action: str
    inputs: dict[str, JSON] = field(default_factory=dict)

    @property
    def invoke_path(self) -> str:
        """REST path of the feed action: /namespaces/whisk.system/actions/alarms/alarm."""
        namespace, _, rest = self.action.lstrip("/").partition("/")
        return f"/namespaces/{namespace}/actions/{rest}"


@dataclass(frozen=True, slots=True)
class DesiredEntity:
    collection: Collection
    name: str  # `pkg/action` or `action`; packages, triggers and rules are never nested
    body: dict[str, Any]
    where: str = ""  # `file:line:col` of its declaration, for messages
    feed: FeedSpec | None = None
    is_sequence: bool = False

    @property
    def key(self) -> tuple[Collection, str]:
        return (self.collection, self.name)

    @property
    def kind_word(self) -> str:
        if self.is_sequence:
            return "sequence"
        if self.collection is Collection.PACKAGES and self.body.get("binding"):
            return "binding"
        return self.collection.value.rstrip("s")

    def path(self, namespace: str) -> str:
        return entity_path(namespace, self.collection, self.name)


def entity_path(namespace: str, collection: Collection, name: str) -> str:
    return f"/namespaces/{namespace}/{collection.value}/{name}"


@dataclass(frozen=True, slots=True)
class Project:
    file: str
    namespace: str
    name: str | None
    managed: bool
    entities: tuple[DesiredEntity, ...]
    warnings: tuple[str, ...] = ()
    routes: tuple[ApiRoute, ...] = ()  # API gateway routes, applied after every entity

    def find(self, collection: Collection, name: str) -> DesiredEntity | None:
        for entity in self.entities:
            if entity.collection is collection and entity.name == name:
                return entity
        return None
