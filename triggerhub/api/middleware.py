"""The one middleware around every route (`MIDDLEWARES`), in layers from the outside in:

    request id      X-Request-ID (echoed, else made), CORS headers, bare preflights, no
                    WWW-Authenticate challenge for X-Requested-With: XMLHttpRequest
      internal      catches everything below: StoreError/BusError -> 503, any other
                    exception -> 500; JSON {"error", "code": <request id>}, logged once
        errors      ApiError, aiohttp's 4xx, RevisionConflict -> their status, JSON
          auth      Basic auth on /api/v1/namespaces and route management; on the routes marked
                    `one_revalidation` (fire, invoke, webhook, web action), one read of the entity
                    generation for the credential check and the handler's cached reads
            handler

As in Starlette's stack, the outermost error layer sits just inside the one that names the
request, so even a bug answers in the API's error shape with the id the log line carries. A
redirect (an HTTPException below 400) passes through every layer untouched. The layers are one
aiohttp middleware, each a nested `try` in it: one coroutine frame per request instead of four
(py-spy showed the four frames' cost on every invoke and fire).
"""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from triggerhub.api.context import (
    IDENTITY, MAX_REQUEST_BYTES, TRANSACTION, Handler, authenticate, engine_of, error_response, revalidates_once,
)
from triggerhub.errors import CONCURRENT_MODIFICATION, NOT_FOUND, ApiError, BusError, RevisionConflict, StoreError
from triggerhub.model import new_activation_id

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
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    transaction = request.headers.get("X-Request-ID") or new_activation_id()  # a uuid4 in hex, as an activation id
    request[TRANSACTION] = transaction
    if request.method == "OPTIONS" and not _answers_own_options(request.path):
        response: web.StreamResponse = web.Response(status=200)
    else:
        try:  # internal: the outermost net, nothing below it reaches aiohttp's plain-text 500
            try:  # errors: those the API means to answer
                with (engine_of(request).entities.one_revalidation() if revalidates_once(handler)
                      else contextlib.nullcontext()):
                    if request.path.startswith(AUTHENTICATED_PATHS):
                        # auth. Web actions authenticate in their handler: only there is it known whether
                        # the action requires auth, and a public one treats any Authorization it cannot
                        # verify as anonymous. Route management (apimgmt) lives under /api/v1/web/ but
                        # always requires auth.
                        identity = await authenticate(request, required=True)
                        if identity is not None:
                            request[IDENTITY] = identity
                    response = await handler(request)
            except ApiError as exc:
                response = error_response(exc.status, exc.message, transaction)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise  # a redirect passes through every layer untouched
                response = _http_error(request, exc, transaction)
            except RevisionConflict:
                response = error_response(409, CONCURRENT_MODIFICATION, transaction)
        except web.HTTPException:
            raise
        except Exception as exc:
            response = _unexpected(request, exc, transaction)
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


def _http_error(request: web.Request, exc: web.HTTPException, transaction: str) -> web.Response:
    """aiohttp's own 4xx (and 5xx) in the API's error shape."""
    if exc.status == 413:
        return error_response(413, f"Request larger than allowed: {request.content_length} > "
                                   f"{request.app[MAX_REQUEST_BYTES]} bytes.", transaction)
    return error_response(exc.status, _REASONS.get(exc.status, exc.reason), transaction)


def _unexpected(request: web.Request, exc: Exception, transaction: str) -> web.Response:
    if isinstance(exc, (StoreError, BusError)):
        # An outage, not a bug: one line, no traceback; the client may retry.
        log.error("request %s %s %s: %s unavailable: %s", transaction, request.method, request.path,
                  "store" if isinstance(exc, StoreError) else "event bus", exc)
        return error_response(503, UNAVAILABLE, transaction)
    # A bug in a handler. Logged once, with the traceback and the request id the client is
    # given, so a report quoting the id finds this line.
    log.error("request %s %s %s failed", transaction, request.method, request.path, exc_info=exc)
    return error_response(500, INTERNAL, transaction)


MIDDLEWARES = (api_middleware,)
