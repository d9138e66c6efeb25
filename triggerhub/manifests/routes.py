"""API gateway routes over OpenWhisk's route management calls (what `wsk api` and wskdeploy use):
`createApi` with an apidoc, `getApi` answered with OpenAPI documents, `deleteApi` by key.

A route's owning project travels in the apidoc (`project`) and comes back in each operation's
`x-triggerhub`, so a managed undeploy finds the routes its project created.
"""

from __future__ import annotations

from triggerhub import errors
from triggerhub.manifests.client import WhiskClient
from triggerhub.model import JSON, ApiRoute, FullyQualifiedName, ResponseType, api_path

MANAGEMENT = "/web/whisk.system/apimgmt"


def apidoc_of(route: ApiRoute) -> dict[str, JSON]:
    fqn = FullyQualifiedName.parse(route.action, route.namespace)
    return {"namespace": route.namespace, "gatewayBasePath": route.base_path, "gatewayPath": route.rel_path,
            "gatewayMethod": route.verb, "apiName": route.api_name, "id": f"API:{route.namespace}:{route.base_path}",
            "action": {"name": fqn.relative, "namespace": fqn.namespace, "backendMethod": route.verb},
            "cors": route.cors, "project": route.project}


def routes_from_listing(payload: JSON, namespace: str) -> list[ApiRoute]:
    """The routes in a `getApi` answer: {"apis": [{"value": {"apidoc": <OpenAPI 2>}}]}."""
    found: list[ApiRoute] = []
    for item in (payload or {}).get("apis") or []:
        doc = ((item or {}).get("value") or {}).get("apidoc") or {}
        base = api_path(str(doc.get("basePath") or "/"))
        title = str((doc.get("info") or {}).get("title") or "")
        for rel, operations in (doc.get("paths") or {}).items():
            for verb, operation in (operations or {}).items():
                target = operation.get("x-openwhisk") or {}
                ours = operation.get("x-triggerhub") or {}
                package = target.get("package")
                action = (f"/{target.get('namespace')}/{target.get('action')}" if package in (None, "default")
                          else f"/{target.get('namespace')}/{package}/{target.get('action')}")
                found.append(ApiRoute(namespace, base, api_path(rel), verb.upper(), action,
                                      ResponseType(ours.get("responsetype", "json")),
                                      "" if title == base else title, bool(ours.get("cors", True)),
                                      str(ours.get("project") or "")))
    return found


async def fetch_routes(client: WhiskClient, namespace: str) -> list[ApiRoute]:
    """The namespace's routes; none when the platform has no API gateway (404)."""
    try:
        return routes_from_listing(await client.get(f"{MANAGEMENT}/getApi"), namespace)
    except errors.NotFound:
        return []


async def create_route(client: WhiskClient, route: ApiRoute) -> None:
    await client.post(f"{MANAGEMENT}/createApi", {"apidoc": apidoc_of(route)},
                      {"responsetype": route.response_type.value})


async def delete_route(client: WhiskClient, route: ApiRoute) -> None:
    await client.delete(f"{MANAGEMENT}/deleteApi", {"basepath": route.base_path, "relpath": route.rel_path,
                                                   "operation": route.verb, "force": "true"})


def describe(route: ApiRoute) -> str:
    return f"{route.verb} {route.base_path}{route.rel_path if route.rel_path != '/' else ''} -> {route.action}"


def same(a: ApiRoute, b: ApiRoute) -> bool:
    """Equal in everything a manifest declares (the timestamp is the hub's)."""
    return (a.key, a.action, a.response_type, a.api_name, a.cors, a.project) == \
        (b.key, b.action, b.response_type, b.api_name, b.cors, b.project)


def find(routes: list[ApiRoute], key: tuple[str, str, str]) -> ApiRoute | None:
    return next((r for r in routes if r.key == key), None)
