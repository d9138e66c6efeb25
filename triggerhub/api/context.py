"""Request plumbing every API module shares: the app and request keys, who is calling, the JSON
body, path names, list windows and the `{"error", "code"}` answer.

A leaf of `triggerhub.api` (checked by lint-imports): it imports no other api module, so the
middlewares, the handler modules and `app.py` can all import it without a cycle.
"""

from __future__ import annotations

import base64
import binascii
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from triggerhub.engine.core import Engine
from triggerhub.errors import AUTH_INVALID, AUTH_MISSING, ILLEGAL_NAME, BadRequest, NotFound, PayloadTooLarge, Unauthorized
from triggerhub.model import FullyQualifiedName, Identity, is_valid_name, loads_json

ENGINE = web.AppKey("engine", Engine)
MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)
IDENTITY = web.RequestKey("identity", Identity)
TRANSACTION = web.RequestKey("transaction", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 30
MAX_LIST_SKIP = 2**31 - 1


def error_response(status: int, message: str, transaction: str) -> web.Response:
    """Every 4xx/5xx the API answers: `{"error": message, "code": request id}`."""
    response = web.json_response({"error": message, "code": transaction}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="OpenWhisk secure realm"'
    return response


_ONE_REVALIDATION: weakref.WeakSet[Handler] = weakref.WeakSet()


def one_revalidation(handler: H) -> H:
    """Marks a hot route (fire, invoke, webhook, web action) whose request writes no entity itself:
    its credential check and cached entity reads revalidate against one read of the store's
    entity generation (engine/generation.py) instead of one each."""
    _ONE_REVALIDATION.add(handler)
    return handler


def revalidates_once(handler: Handler) -> bool:
    return handler in _ONE_REVALIDATION


def engine_of(request: web.Request) -> Engine:
    return request.app[ENGINE]


async def authenticate(request: web.Request, *, required: bool) -> Identity | None:
    """The identity behind the request's Basic credentials; None without any (unless `required`)."""
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
    return await engine_of(request).auth.identify(decoded)


def identity_of(request: web.Request) -> Identity:
    """The caller the auth middleware identified; 401 when it identified none."""
    if IDENTITY not in request:
        raise Unauthorized(AUTH_MISSING)
    return request[IDENTITY]


async def json_body(request: web.Request, limit_bytes: int | None = None) -> Any:
    """The request's JSON body (None when empty); 400 when malformed, 413 when too large."""
    limit = limit_bytes or engine_of(request).config.api.max_payload_bytes
    raw = await request.read()
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request larger than allowed: {len(raw)} > {limit} bytes.")
    if not raw.strip():
        return None
    try:
        return loads_json(raw)
    except ValueError as exc:
        raise BadRequest(f"The request content was malformed:\n{exc}") from exc


def namespace_of(request: web.Request, identity: Identity) -> str:
    """The path's `{namespace}`, with `_` standing for the caller's own."""
    namespace = request.match_info["namespace"]
    namespace = identity.namespace if namespace == "_" else namespace
    if not is_valid_name(namespace):
        raise BadRequest(ILLEGAL_NAME)
    return namespace


def name_of(request: web.Request, namespace: str) -> FullyQualifiedName:
    """The path's `{name}`: `name` or `package/name` in `namespace`."""
    parts = request.match_info["name"].split("/")
    if len(parts) == 1:
        package, name = None, parts[0]
    elif len(parts) == 2:
        package, name = parts
    else:
        raise NotFound("The requested resource does not exist.")
    for part in (package, name):
        if part is not None and not is_valid_name(part):
            raise BadRequest(ILLEGAL_NAME)
    return FullyQualifiedName(namespace, name, package)


def flag(request: web.Request, key: str) -> bool:
    """A `?key=true` query flag (anything else is false)."""
    return request.query.get(key, "false").lower() == "true"


def _int_param(request: web.Request, key: str, default: int, collection: str) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise BadRequest(f"The value '{raw}' is not an integer for {collection}.") from exc


def list_window(request: web.Request, collection: str) -> tuple[int, int]:
    """(skip, limit) of a list request; `limit=0` means the largest page."""
    skip = _int_param(request, "skip", 0, collection)
    limit = _int_param(request, "limit", DEFAULT_LIST_LIMIT, collection)
    if not 0 <= skip <= MAX_LIST_SKIP:
        raise BadRequest(f"The value '{skip}' is not in the range of 0 to {MAX_LIST_SKIP} for {collection} "
                         f"(parameter 'skip').")
    if not 0 <= limit <= MAX_LIST_LIMIT:
        raise BadRequest(f"The value '{limit}' is not in the range of 0 to {MAX_LIST_LIMIT} for {collection}.")
    return skip, limit or MAX_LIST_LIMIT
