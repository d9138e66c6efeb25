"""Routes for activation records: list, get, logs, result (reference 1.3, activations)."""

from __future__ import annotations

from aiohttp import web

from triggerhub.api import views
from triggerhub.api.context import engine_of, flag, identity_of, list_window, namespace_of
from triggerhub.errors import FORBIDDEN, NOT_FOUND, BadRequest, Forbidden, NotFound
from triggerhub.model import ACTIVATION_ID_RE, Activation
from triggerhub.store.base import ActivationQuery

routes = web.RouteTableDef()
MAX_EPOCH_MS = 2**53 - 1  # a JSON-safe integer, well inside the store's 64-bit columns


def _epoch(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"Parameter is not a valid value for epoch seconds: {raw}") from exc
    if not 0 <= value <= MAX_EPOCH_MS:
        raise BadRequest(f"Parameter is not a valid value for epoch seconds: {raw} ('{key}' is epoch "
                         f"milliseconds from 0 to {MAX_EPOCH_MS})")
    return value


def _query(request: web.Request, namespace: str) -> ActivationQuery:
    name = request.query.get("name")
    if name is not None:
        name = name.strip("/")
        if not name or len(name.split("/")) > 2:
            raise BadRequest(f"Parameter may be a 'simple' name or 'package-name/simple' name: {request.query['name']}")
    skip, limit = list_window(request, "activations")
    return ActivationQuery(namespace=namespace, name=name, since_ms=_epoch(request, "since"),
                           upto_ms=_epoch(request, "upto"), skip=skip, limit=limit)


def _own_namespace(request: web.Request) -> str:
    identity = identity_of(request)
    namespace = namespace_of(request, identity)
    if namespace != identity.namespace:
        raise Forbidden(FORBIDDEN)
    return namespace


@routes.get("/api/v1/namespaces/{namespace}/activations")
@routes.get("/api/v1/namespaces/{namespace}/activations/")
async def list_activations(request: web.Request) -> web.Response:
    namespace = _own_namespace(request)
    engine = engine_of(request)
    count = flag(request, "count")
    docs = flag(request, "docs")
    if count and docs:
        raise BadRequest("The parameter 'docs' is not permitted with 'count'.")
    query = _query(request, namespace)
    if count:
        return web.json_response({"activations": await engine.count_activations(query)})
    records = await engine.activations(query)
    render = views.activation_json if docs else views.activation_summary
    return web.json_response([render(r) for r in records])


async def _record(request: web.Request) -> Activation:
    namespace = _own_namespace(request)
    activation_id = request.match_info["id"]
    if not ACTIVATION_ID_RE.match(activation_id):
        raise BadRequest(f"The activation id '{activation_id}' is not valid: it must be 32 lowercase hexadecimal characters.")
    record = await engine_of(request).find_activation(namespace, activation_id)
    if record is None:
        raise NotFound(NOT_FOUND)
    return record


@routes.get("/api/v1/namespaces/{namespace}/activations/{id}")
async def get_activation(request: web.Request) -> web.Response:
    return web.json_response(views.activation_json(await _record(request)))


@routes.get("/api/v1/namespaces/{namespace}/activations/{id}/logs")
async def get_logs(request: web.Request) -> web.Response:
    return web.json_response({"logs": list((await _record(request)).logs)})


@routes.get("/api/v1/namespaces/{namespace}/activations/{id}/result")
async def get_result(request: web.Request) -> web.Response:
    return web.json_response(views.result_json(await _record(request)))
