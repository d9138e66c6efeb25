"""The OpenAPI 2.0 document of one base path's routes: what `getApi` and `wsk api get` return.

Each operation names its web action under `x-openwhisk` (as OpenWhisk's gateway documents do) and
carries the hub's own route settings under `x-triggerhub` (response type, CORS, owning project).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triggerhub.model import ApiRoute, FullyQualifiedName

GATEWAY_PREFIX = "/api"  # routes are served at /api/<namespace><base path><relative path>


def gateway_url(origin: str, namespace: str) -> str:
    return f"{origin}{GATEWAY_PREFIX}/{namespace}"


def openapi_document(routes: Sequence[ApiRoute], origin: str) -> dict[str, Any]:
    """`routes` all share one base path and namespace."""
    first = routes[0]
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.rel_path, {})[route.verb.lower()] = _operation(route, origin)
    return {
        "swagger": "2.0",
        "info": {"title": next((r.api_name for r in routes if r.api_name), first.base_path), "version": "1.0.0"},
        "basePath": first.base_path,
        "x-gateway-url": gateway_url(origin, first.namespace) + (first.base_path if first.base_path != "/" else ""),
        "paths": paths,
    }


def _operation(route: ApiRoute, origin: str) -> dict[str, Any]:
    fqn = FullyQualifiedName.parse(route.action, route.namespace)
    package = fqn.package or "default"
    operation: dict[str, Any] = {
        "operationId": f"{route.verb.lower()}{route.rel_path}",
        "responses": {"default": {"description": "Default response"}},
        "x-openwhisk": {"namespace": fqn.namespace, "package": package, "action": fqn.name,
                        "url": f"{origin}/api/v1/web/{fqn.namespace}/{package}/{fqn.name}.{route.response_type.value}"},
        "x-triggerhub": {"responsetype": route.response_type.value, "cors": route.cors, "project": route.project},
    }
    if route.path_parameters:
        operation["parameters"] = [{"name": name, "in": "path", "required": True, "type": "string",
                                    "description": f"path parameter '{name}', passed to the action as '{name}'"}
                                   for name in route.path_parameters]
    return operation
