"""API gateway: OpenWhisk's route management calls and the routes they create, served.

Management (authenticated, the caller's own routes only), as the `openwhisk` npm client and
`wsk api` call it: `POST /api/v1/web/whisk.system/apimgmt/createApi` with `{"apidoc": ...}`,
`GET .../getApi?basepath&relpath&operation`, `DELETE .../deleteApi?basepath&relpath&operation`.
Serving: `/api/<namespace><base path><relative path>` with the route's verb runs its web action
with the path parameters as arguments; CORS preflight is answered for routes that allow it.
"""

from __future__ import annotations

from aiohttp import web

from triggerhub.api.context import engine_of, identity_of, json_body
from triggerhub.api.openapi import GATEWAY_PREFIX, gateway_url, openapi_document
from triggerhub.api.web_actions import serve
from triggerhub.engine.apis import RouteFilter, RouteMatch, routes_by_base
from triggerhub.errors import NOT_FOUND, BadRequest, MethodNotAllowed, NotFound
from triggerhub.model import ApiRoute, FullyQualifiedName, Identity

routes = web.RouteTableDef()
MANAGEMENT = "/api/v1/web/whisk.system/apimgmt"
CORS_EXPOSED = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"


def _operation(request: web.Request) -> str:
    """`createApi`, `createApi.http` and `createApi.json` are one call (wsk uses the suffix)."""
    return request.match_info["operation"].split(".", 1)[0]


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _selection(request: web.Request) -> RouteFilter:
    query = request.query
    return RouteFilter(query.get("basepath") or None, query.get("relpath") or None, query.get("operation") or None)


def _api_item(identity: Identity, base_path: str, members: list[ApiRoute], origin: str) -> dict[str, object]:
    api_id = f"API:{identity.namespace}:{base_path}"
    return {"id": api_id, "key": api_id, "value": _api_value(identity, members, origin)}


def _api_value(identity: Identity, members: list[ApiRoute], origin: str) -> dict[str, object]:
    return {"namespace": identity.namespace, "gwApiActivated": True, "tenantId": identity.namespace,
            "gwApiUrl": gateway_url(origin, identity.namespace), "apidoc": openapi_document(members, origin)}


@routes.post(MANAGEMENT + "/{operation:createApi(\\.json|\\.http)?}")
async def create_api(request: web.Request) -> web.Response:
    identity = identity_of(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: expected {\"apidoc\": {...}}")
    created = await engine_of(request).apis.create(identity, body.get("apidoc"),
                                                   response_type=request.query.get("responsetype"))
    base_path = created[0].base_path
    members = await engine_of(request).apis.listing(identity, RouteFilter(base_path))
    return web.json_response(_api_value(identity, [r for r in members if r.base_path == base_path], _origin(request)))


@routes.get(MANAGEMENT + "/{operation:getApi(\\.json|\\.http)?}")
async def get_api(request: web.Request) -> web.Response:
    identity = identity_of(request)
    found = await engine_of(request).apis.listing(identity, _selection(request),
                                                  namespace=request.query.get("namespace"))
    origin = _origin(request)
    return web.json_response({"apis": [_api_item(identity, base, members, origin)
                                       for base, members in routes_by_base(found).items()]})


@routes.delete(MANAGEMENT + "/{operation:deleteApi(\\.json|\\.http)?}")
async def delete_api(request: web.Request) -> web.Response:
    identity = identity_of(request)
    await engine_of(request).apis.delete(identity, _selection(request), namespace=request.query.get("namespace"))
    return web.json_response({})


@routes.route("*", GATEWAY_PREFIX + "/{namespace:(?!v1$)[^/]+}/{tail:.*}")
async def gateway(request: web.Request) -> web.StreamResponse:
    path = "/" + request.match_info["tail"]
    matches = await engine_of(request).apis.match(request.match_info["namespace"], path)
    if not matches:
        raise NotFound(NOT_FOUND)
    chosen = next((m for m in matches if m.route.verb == request.method), None)
    allowed = sorted({m.route.verb for m in matches} | {"OPTIONS"})
    cors = any(m.route.cors for m in matches)
    if chosen is None:
        if request.method == "OPTIONS" and cors:
            return web.Response(status=200, headers=_cors_headers(request, allowed))
        raise MethodNotAllowed(f"{request.method} is not allowed on {path}; this route answers "
                               f"{', '.join(v for v in allowed if v != 'OPTIONS')}")
    response = await _run(request, chosen)
    for header in [h for h in response.headers if h.lower().startswith("access-control-")]:
        del response.headers[header]
    if chosen.route.cors:
        response.headers.update(_cors_headers(request, allowed))
    return response


async def _run(request: web.Request, chosen: RouteMatch) -> web.StreamResponse:
    fqn = FullyQualifiedName.parse(chosen.route.action, chosen.route.namespace)
    return await serve(request, fqn, "." + chosen.route.response_type.value, chosen.rel_path,
                       path_args=chosen.parameters)


def _cors_headers(request: web.Request, allowed: list[str]) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": ", ".join(allowed),
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", CORS_EXPOSED)}
