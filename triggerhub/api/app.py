"""The aiohttp application: OpenWhisk REST API v1, info routes and the middlewares around them.

Middlewares, outermost first: transaction id + CORS, error rendering ({"error", "code"}), auth.
Handlers live in `entities.py`, `activations.py` and `web.py`; they call the engine only.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from triggerhub import __version__
from triggerhub.errors import (
    AUTH_INVALID, AUTH_MISSING, CONCURRENT_MODIFICATION, NOT_FOUND, ApiError, BadRequest, BusError,
    PayloadTooLarge, RevisionConflict, StoreError, Unauthorized,
)
from triggerhub.engine.core import Engine
from triggerhub.model import HUB_DEFAULT_KINDS, HUB_KINDS, Identity, loads_json

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)
IDENTITY = web.RequestKey("identity", Identity)
TRANSACTION = web.RequestKey("transaction", str)
AUTHENTICATED_PATHS = ("/api/v1/namespaces", "/api/v1/web/whisk.system/apimgmt/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, DELETE, POST, PUT, HEAD",
    "Access-Control-Allow-Headers": "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent",
}
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: NOT_FOUND, 405: "Method Not Allowed",
            409: "Conflict", 413: "Request Entity Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


UNAVAILABLE = "The service is temporarily unavailable (store or event bus unreachable); retry later."
INTERNAL = "The server encountered an internal error; report the request id in 'code'."


def error_response(status: int, message: str, transaction: str) -> web.Response:
    response = web.json_response({"error": message, "code": transaction}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="OpenWhisk secure realm"'
    return response


@web.middleware
async def transaction_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    transaction = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    request[TRANSACTION] = transaction
    if request.method == "OPTIONS" and not _answers_own_options(request.path):
        response: web.StreamResponse = web.Response(status=200)
    else:
        response = await handler(request)
    response.headers["X-Request-ID"] = transaction
    if request.path.startswith("/api/v1") and not request.path.startswith("/api/v1/web/"):
        response.headers.update(CORS_HEADERS)
    return response


def _answers_own_options(path: str) -> bool:
    """Web actions and API gateway routes (/api/<namespace>/...) answer their own preflight."""
    if path.startswith("/api/v1/web/"):
        return True
    return path.startswith("/api/") and path != "/api/v1" and not path.startswith("/api/v1/")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    transaction = request[TRANSACTION]
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, transaction)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            return error_response(413, f"Request larger than allowed: {request.content_length} > "
                                       f"{request.app[MAX_REQUEST_BYTES]} bytes.", transaction)
        return error_response(exc.status, _REASONS.get(exc.status, exc.reason), transaction)
    except RevisionConflict:
        return error_response(409, CONCURRENT_MODIFICATION, transaction)
    except (StoreError, BusError) as exc:
        # An outage, not a bug: one line, no traceback; the client may retry.
        log.error("request %s %s %s: %s unavailable: %s", transaction, request.method, request.path,
                  "store" if isinstance(exc, StoreError) else "event bus", exc)
        return error_response(503, UNAVAILABLE, transaction)
    except Exception:
        # The outermost net: a bug in a handler. Logged once, with the traceback and the request id
        # the client is given, so a report quoting the id finds this line.
        log.exception("request %s %s %s failed", transaction, request.method, request.path)
        return error_response(500, INTERNAL, transaction)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Web actions authenticate in their handler: only there is it known whether the action
    # requires auth, and a public one treats any Authorization it cannot verify as anonymous.
    # Route management (apimgmt) lives under /api/v1/web/ but always requires auth.
    if request.path.startswith(AUTHENTICATED_PATHS):
        identity = await authenticate(request, required=True)
        if identity is not None:
            request[IDENTITY] = identity
    return await handler(request)


async def authenticate(request: web.Request, *, required: bool) -> Identity | None:
    header = request.headers.get("Authorization", "")
    if not header:
        if required:
            raise Unauthorized(AUTH_MISSING)
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized(AUTH_INVALID)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized(AUTH_INVALID) from exc
    return await request.app[ENGINE].auth.identify(decoded)


def identity_of(request: web.Request) -> Identity:
    identity = request.get(IDENTITY)
    if identity is None:
        raise Unauthorized(AUTH_MISSING)
    return identity


async def json_body(request: web.Request, limit_bytes: int | None = None) -> Any:
    """The request's JSON body (None when empty); 400 when malformed, 413 when too large."""
    limit = limit_bytes or request.app[ENGINE].config.api.max_payload_bytes
    raw = await request.read()
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request larger than allowed: {len(raw)} > {limit} bytes.")
    if not raw.strip():
        return None
    try:
        return loads_json(raw)
    except ValueError as exc:
        raise BadRequest(f"The request content was malformed:\n{exc}") from exc


async def info_root(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    limits = engine.config.limits
    return web.json_response({
        "description": "OpenWhisk", "support": {"github": "triggerhub"}, "api_paths": ["/api/v1"],
        "limits": {
            "actions_per_minute": limits.invocations_per_minute, "triggers_per_minute": limits.fires_per_minute,
            "concurrent_actions": limits.concurrent_invocations, "sequence_length": limits.sequence_max_length,
            "default_min_action_duration": limits.min_timeout_ms, "default_max_action_duration": limits.max_timeout_ms,
            "default_min_action_memory": limits.min_memory_mb * 1024 * 1024,
            "default_max_action_memory": limits.max_memory_mb * 1024 * 1024,
            "min_action_duration": limits.min_timeout_ms, "max_action_duration": limits.max_timeout_ms,
            "min_action_memory": limits.min_memory_mb * 1024 * 1024, "max_action_memory": limits.max_memory_mb * 1024 * 1024,
            "default_min_action_logs": limits.min_logs_mb * 1024 * 1024, "default_max_action_logs": limits.max_logs_mb * 1024 * 1024,
            "min_action_logs": limits.min_logs_mb * 1024 * 1024, "max_action_logs": limits.max_logs_mb * 1024 * 1024,
        },
        "runtimes": {family: [{"kind": kind, "default": kind == default, "deprecated": False}
                              for kind in HUB_KINDS if kind.partition(":")[0] == family]
                     for family, default in HUB_DEFAULT_KINDS.items()},
    })


async def info_api(request: web.Request) -> web.Response:
    return web.json_response({
        "description": "OpenWhisk API", "api_version": "1.0.0", "api_version_path": "v1",
        "build": "triggerhub", "buildno": __version__,
        "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"},
    })


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


def create_app(engine: Engine, extra_routes: list[web.RouteDef] | None = None) -> web.Application:
    from triggerhub.api import activations, api_docs, entities, routes, web_actions

    max_request = engine.config.api.max_code_bytes + 1024 * 1024
    app = web.Application(middlewares=[transaction_middleware, error_middleware, auth_middleware],
                          client_max_size=max_request)
    app[ENGINE] = engine
    app[MAX_REQUEST_BYTES] = max_request
    app.router.add_get("/", info_root)
    app.router.add_get("/ping", ping)
    app.router.add_get("/api/v1", info_api)
    app.router.add_get("/api/v1/", info_api)
    app.router.add_routes(entities.routes)
    app.router.add_routes(activations.routes)
    app.router.add_routes(routes.routes)  # before web_actions: apimgmt is under /api/v1/web/
    app.router.add_routes(web_actions.routes)
    app.router.add_routes(api_docs.routes)
    if extra_routes:
        app.router.add_routes(extra_routes)
    return app
