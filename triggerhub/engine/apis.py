"""API gateway routes: base path + relative path + verb -> a web action, kept per namespace.

Routes arrive as the `apidoc` of OpenWhisk's route management calls (`createApi`, the shape the
`openwhisk` npm client and `wsk api` send, or a whole OpenAPI document under `swagger`). Every
call is authorised like an entity call: routes are the caller's own, and the action must be a
web action the caller may read. The `authkey` a client sends along is never stored.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from triggerhub.errors import FORBIDDEN, BadRequest, Forbidden, NotFound
from triggerhub.model import (
    API_VERBS, Action, ApiRoute, FullyQualifiedName, Identity, ResponseType, annotation, api_path, now_ms,
)
from triggerhub.store.base import Store


class _Resolved(Protocol):
    @property
    def action(self) -> Action: ...


Resolver = Callable[[Identity, FullyQualifiedName], Awaitable[_Resolved]]


@dataclass(frozen=True, slots=True)
class RouteFilter:
    """`getApi` / `deleteApi` query: base path or API name, relative path, verb (None: any)."""

    base_path: str | None = None
    rel_path: str | None = None
    verb: str | None = None

    def matches(self, route: ApiRoute) -> bool:
        if self.base_path is not None and self.base_path != route.api_name \
                and api_path(self.base_path) != route.base_path:
            return False
        if self.rel_path is not None and api_path(self.rel_path) != route.rel_path:
            return False
        return self.verb is None or self.verb.upper() == route.verb


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A route whose path fits a request, its path parameters, and the path below the base path."""

    route: ApiRoute
    parameters: dict[str, str]
    rel_path: str


class ApiGateway:
    def __init__(self, store: Store, resolve: Resolver) -> None:
        self._store = store
        self._resolve = resolve

    async def create(self, identity: Identity, apidoc: Any, *, response_type: str | None) -> list[ApiRoute]:
        """Create or replace the routes an apidoc describes; all are checked before any is stored."""
        if not isinstance(apidoc, dict):
            raise BadRequest("apidoc is missing; send {\"apidoc\": {\"gatewayBasePath\", \"gatewayPath\", "
                             "\"gatewayMethod\", \"action\": {\"name\", \"namespace\"}}}")
        _check_namespace(identity, apidoc.get("namespace"))
        kind = _response_type(response_type)
        routes = _from_swagger(identity, apidoc, kind) if "swagger" in apidoc else [_from_apidoc(identity, apidoc, kind)]
        for route in routes:
            await self._check_action(identity, route.action)
        named = []
        for route in routes:
            if not route.api_name:  # the API's name belongs to its base path: a new route keeps it
                siblings = await self._store.list_routes(identity.namespace, base_path=route.base_path)
                route = replace(route, api_name=next((r.api_name for r in siblings if r.api_name), ""))
            await self._store.put_route(route)
            named.append(route)
        return named

    async def listing(self, identity: Identity, selection: RouteFilter, *, namespace: str | None = None) -> list[ApiRoute]:
        _check_namespace(identity, namespace)
        return [r for r in await self._store.list_routes(identity.namespace) if selection.matches(r)]

    async def delete(self, identity: Identity, selection: RouteFilter, *, namespace: str | None = None) -> list[ApiRoute]:
        if not selection.base_path:
            raise BadRequest("basepath is missing; name the base path (or API name) whose routes to delete")
        doomed = await self.listing(identity, selection, namespace=namespace)
        if not doomed:
            raise NotFound(f"API '{selection.base_path}' has no route matching relpath "
                           f"{selection.rel_path or '(any)'} and operation {selection.verb or '(any)'}")
        await self._store.delete_routes(doomed)
        return doomed

    async def match(self, namespace: str, path: str) -> list[RouteMatch]:
        """Routes of `namespace` whose base and relative path fit `path`, literal ones first."""
        path = api_path(path)
        found = []
        for route in await self._store.list_routes(namespace):
            base = route.base_path
            if base != "/" and path != base and not path.startswith(base + "/"):
                continue
            rel = path if base == "/" else path[len(base):] or "/"
            parameters = route.match(rel)
            if parameters is not None:
                found.append(RouteMatch(route, parameters, rel))
        return sorted(found, key=lambda m: len(m.parameters))

    async def _check_action(self, identity: Identity, action: str) -> None:
        fqn = FullyQualifiedName.parse(action, identity.namespace)
        try:
            resolved = await self._resolve(identity, fqn)
        except NotFound as exc:
            raise NotFound(f"action '{action}' does not exist; create it as a web action first") from exc
        web = annotation(resolved.action.annotations, "web-export", False)
        if web is not True and str(web).lower() not in ("true", "yes"):
            raise BadRequest(f"action '{action}' is not a web action; make it one with "
                             f"`wsk action update {fqn.package + '/' if fqn.package else ''}{fqn.name} --web true` "
                             f"(or 'web: true' in a manifest)")


def _check_namespace(identity: Identity, namespace: Any) -> None:
    if namespace not in (None, "", "_", identity.namespace):
        raise Forbidden(FORBIDDEN)


def _response_type(value: str | None) -> ResponseType:
    try:
        return ResponseType((value or "json").lower())
    except ValueError:
        raise BadRequest(f"responsetype '{value}' is not supported; use one of "
                         f"{', '.join(t.value for t in ResponseType)}") from None


def _verb(value: Any) -> str:
    verb = str(value or "").upper()
    if verb not in API_VERBS:
        raise BadRequest(f"operation '{value}' is not supported; use one of {', '.join(API_VERBS)}")
    return verb


def _action_fqn(identity: Identity, namespace: Any, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise BadRequest("apidoc.action.name is missing; name the web action the route calls")
    ns = identity.namespace if namespace in (None, "", "_") else str(namespace)
    try:
        return str(FullyQualifiedName.parse(name if name.startswith("/") else f"/{ns}/{name}", ns))
    except ValueError as exc:
        raise BadRequest(f"apidoc.action.name '{name}': {exc}") from exc


def _from_apidoc(identity: Identity, apidoc: dict[str, Any], kind: ResponseType) -> ApiRoute:
    action: dict[str, Any] = apidoc["action"] if isinstance(apidoc.get("action"), dict) else {}
    for key in ("gatewayPath", "gatewayMethod"):
        if not isinstance(apidoc.get(key), str) or not apidoc[key]:
            raise BadRequest(f"apidoc.{key} is missing; a route needs gatewayBasePath, gatewayPath, gatewayMethod "
                             f"and action")
    return ApiRoute(
        namespace=identity.namespace, base_path=api_path(str(apidoc.get("gatewayBasePath") or "/")),
        rel_path=api_path(apidoc["gatewayPath"]), verb=_verb(apidoc["gatewayMethod"]),
        action=_action_fqn(identity, action.get("namespace"), action.get("name")), response_type=kind,
        api_name=str(apidoc.get("apiName") or ""), cors=apidoc.get("cors") is not False,
        project=str(apidoc.get("project") or ""), updated_ms=now_ms())


def _from_swagger(identity: Identity, apidoc: dict[str, Any], kind: ResponseType) -> list[ApiRoute]:
    """Every operation of an OpenAPI 2 document that names its action under `x-openwhisk`."""
    swagger = apidoc["swagger"]
    if isinstance(swagger, str):
        try:
            swagger = json.loads(swagger)
        except ValueError as exc:
            raise BadRequest(f"apidoc.swagger is not JSON: {exc}") from exc
    if not isinstance(swagger, dict) or not isinstance(swagger.get("paths"), dict):
        raise BadRequest("apidoc.swagger must be an OpenAPI document with 'basePath' and 'paths'")
    base = api_path(str(swagger.get("basePath") or "/"))
    title = str((swagger.get("info") or {}).get("title") or "")
    routes = []
    for rel, operations in swagger["paths"].items():
        if not isinstance(operations, dict):
            raise BadRequest(f"swagger path {rel}: expected a mapping of operations, e.g. {{\"get\": {{...}}}}")
        for verb, operation in operations.items():
            target = operation.get("x-openwhisk") if isinstance(operation, dict) else None
            if not isinstance(target, dict) or not isinstance(target.get("action"), str) or not target["action"]:
                raise BadRequest(f"swagger path {rel} {verb}: 'x-openwhisk' must name the action "
                                 f"(namespace, package, action)")
            name = target["action"] if target.get("package") in (None, "", "default") else \
                f"{target['package']}/{target['action']}"
            routes.append(ApiRoute(identity.namespace, base, api_path(rel), _verb(verb),
                                   _action_fqn(identity, target.get("namespace"), name), kind, title,
                                   updated_ms=now_ms()))
    if not routes:
        raise BadRequest("apidoc.swagger defines no operations")
    return routes


def routes_by_base(routes: Sequence[ApiRoute]) -> dict[str, list[ApiRoute]]:
    out: dict[str, list[ApiRoute]] = {}
    for route in routes:
        out.setdefault(route.base_path, []).append(route)
    return out
