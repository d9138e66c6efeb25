"""The middlewares around every route, in the order `create_app` installs them (`MIDDLEWARES`).

    transaction_middleware      request id (X-Request-ID, echoed), CORS headers, bare preflights,
                                no WWW-Authenticate challenge for X-Requested-With: XMLHttpRequest
      internal_error_middleware catches everything below: StoreError/BusError -> 503, any other
                                exception -> 500; JSON {"error", "code": <request id>}, logged once
        error_middleware        ApiError, aiohttp's 4xx, RevisionConflict -> their status, JSON
          auth_middleware       Basic auth on /api/v1/namespaces and route management
            handler

As in Starlette's stack, the outermost error layer sits just inside the one that names the
request, so even a bug answers in the API's error shape with the id the log line carries. A
redirect (an HTTPException below 400) passes through every layer untouched.
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from triggerhub.api.context import IDENTITY, MAX_REQUEST_BYTES, TRANSACTION, Handler, authenticate, error_response
from triggerhub.errors import CONCURRENT_MODIFICATION, NOT_FOUND, ApiError, BusError, RevisionConflict, StoreError

log = logging.getLogger(__name__)

AUTHENTICATED_PATHS = ("/api/v1/namespaces", "/api/v1/web/whisk.system/apimgmt/")
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


@web.middleware
async def transaction_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    transaction = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    request[TRANSACTION] = transaction
    if request.method == "OPTIONS" and not _answers_own_options(request.path):
        response: web.StreamResponse = web.Response(status=200)
    else:
        response = await handler(request)
    response.headers["X-Request-ID"] = transaction
    if request.headers.get("X-Requested-With") == "XMLHttpRequest":
        # A script asked (the dashboard): its 401 must not open the browser's sign-in prompt.
        response.headers.popall("WWW-Authenticate", None)
    if request.path.startswith("/api/v1") and not request.path.startswith("/api/v1/web/"):
        response.headers.update(CORS_HEADERS)
    return response


def _answers_own_options(path: str) -> bool:
    """Web actions and API gateway routes (/api/<namespace>/...) answer their own preflight."""
    if path.startswith("/api/v1/web/"):
        return True
    return path.startswith("/api/") and path != "/api/v1" and not path.startswith("/api/v1/")


@web.middleware
async def internal_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost net: nothing below it reaches aiohttp's plain-text 500."""
    transaction = request[TRANSACTION]
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # a redirect: error_middleware renders every HTTP error below this layer
    except (StoreError, BusError) as exc:
        # An outage, not a bug: one line, no traceback; the client may retry.
        log.error("request %s %s %s: %s unavailable: %s", transaction, request.method, request.path,
                  "store" if isinstance(exc, StoreError) else "event bus", exc)
        return error_response(503, UNAVAILABLE, transaction)
    except Exception:
        # A bug in a handler. Logged once, with the traceback and the request id the client is
        # given, so a report quoting the id finds this line.
        log.exception("request %s %s %s failed", transaction, request.method, request.path)
        return error_response(500, INTERNAL, transaction)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The errors the API means to answer: ApiError, aiohttp's own 4xx, a lost revision race."""
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


MIDDLEWARES = (transaction_middleware, internal_error_middleware, error_middleware, auth_middleware)
