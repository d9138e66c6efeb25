"""The `apis:` grammar of a wskdeploy package, read into route entries without resolving names:

    apis: {<api name>: {<basepath>: {<relpath>: {<action>: {method: GET, response: http} | GET}}}}

The entity builder resolves each entry's action and turns it into an ApiRoute.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from triggerhub.manifests.params import describe
from triggerhub.manifests.source import Source, YamlPath
from triggerhub.model import API_VERBS, ResponseType, api_path


@dataclass(frozen=True, slots=True)
class ApiEntry:
    api_name: str
    base_path: str  # `/hello`
    rel_path: str  # `/world/{id}`
    action_ref: str  # as written: `name` or `pkg/name`
    path: YamlPath  # of the `<action>` key


@dataclass(frozen=True, slots=True)
class Operation:
    verb: str
    response: ResponseType


def api_entries(pkg_path: YamlPath, package: dict[str, Any]) -> Iterator[ApiEntry]:
    for api_name, bases in _map(package.get("apis")).items():
        for base, rels in _map(bases).items():
            for rel, actions in _map(rels).items():
                for action_ref in _map(actions):
                    yield ApiEntry(str(api_name), api_path(str(base)), api_path(str(rel)), str(action_ref),
                                   pkg_path + ("apis", api_name, base, rel, action_ref))


def operation(source: Source, entry: ApiEntry) -> Operation | str:
    """The entry's verb and response type, or what is wrong with them."""
    spec = source.get(entry.path)
    method, response = (spec, "json") if isinstance(spec, str) else (
        _map(spec).get("method"), _map(spec).get("response", "json"))
    verb = str(method or "").upper()
    if verb not in API_VERBS:
        return f"{describe(method)} is not an HTTP method; use one of {', '.join(API_VERBS)} (as 'method: GET')"
    if response not in {t.value for t in ResponseType}:
        return f"{describe(response)} is not a response type; use one of {', '.join(t.value for t in ResponseType)}"
    return Operation(verb, ResponseType(response))


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
