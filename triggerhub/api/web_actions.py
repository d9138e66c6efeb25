"""Web actions (reference 1.6): `/api/v1/web/{ns}/{pkg|default}/{action}[.ext][/path]`.

Requests become action arguments (`__ow_method`, `__ow_headers`, `__ow_path`, ...); results are
projected back to HTTP by the extension's transcoder.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from triggerhub.api.context import TRANSACTION, authenticate, engine_of, error_response, one_revalidation
from triggerhub.errors import NOT_FOUND, RESERVED_PARAMS, ApiError, BadRequest, NotFound, Unauthorized
from triggerhub.model import (
    Activation, FullyQualifiedName, Identity, StatusCode, annotation, loads_json, params_to_dict,
)

routes = web.RouteTableDef()
EXTENSIONS = (".http", ".json", ".html", ".svg", ".text")
CORS_WEB = {"Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"}
DEFAULT_ALLOW_HEADERS = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
_HEADER_NAME_RE = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an RFC 9110 token
_HEADER_VALUE_FORBIDDEN_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL, other controls (tab is allowed)
_TEXT_TYPES = ("text/", "application/xml", "application/javascript", "application/x-www-form-urlencoded")


def _split(tail: str) -> tuple[str, str, str, str]:
    """`pkg/action.ext/extra` -> (pkg, action, ext, extra path)."""
    parts = tail.split("/", 2)
    if len(parts) < 2:
        raise NotFound(NOT_FOUND)
    package, rest = parts[0], parts[1]
    extra = "/" + parts[2] if len(parts) == 3 else ""
    extension = ""
    for ext in EXTENSIONS:
        if rest.endswith(ext):
            rest, extension = rest[: -len(ext)], ext
            break
    return package, rest, extension or ".http", extra


@routes.route("*", "/api/v1/web/{namespace}/{tail:.+}")
@one_revalidation
async def web_action(request: web.Request) -> web.StreamResponse:
    namespace = request.match_info["namespace"]
    package, name, extension, extra = _split(request.match_info["tail"])
    return await serve(request, FullyQualifiedName(namespace, name, None if package == "default" else package),
                       extension, extra)


async def serve(request: web.Request, fqn: FullyQualifiedName, extension: str, extra: str, *,
                path_args: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Run web action `fqn` for this request; `path_args` are an API route's path parameters."""
    engine = engine_of(request)
    owner = Identity(fqn.namespace, fqn.namespace, "", "")
    try:
        resolved = await engine.resolve(owner, fqn)
    except ApiError as exc:
        raise NotFound(NOT_FOUND) from exc
    action = resolved.action
    annotations = action.annotations
    if not _truthy(annotation(annotations, "web-export", False)):
        raise NotFound(NOT_FOUND)
    custom_options = _truthy(annotation(annotations, "web-custom-options", False))
    if request.method == "OPTIONS" and not custom_options:
        allow = request.headers.get("Access-Control-Request-Headers", DEFAULT_ALLOW_HEADERS)
        return web.Response(status=200, headers={**CORS_WEB, "Access-Control-Allow-Headers": allow})
    caller = await _check_auth(request, annotation(annotations, "require-whisk-auth", False))
    raw = _truthy(annotation(annotations, "raw-http", False))
    args, supplied = await _arguments(request, extra, raw=raw)
    if path_args:
        args, supplied = {**args, **path_args}, supplied | set(path_args)
    if not raw:
        defined = set(resolved.inherited) | set(params_to_dict(action.parameters))
        final = _truthy(annotation(annotations, "final", False))
        if any(k.startswith("__ow_") for k in supplied) or (final and defined & supplied):
            raise BadRequest(RESERVED_PARAMS)
    if caller is not None:
        args["__ow_user"] = caller.namespace
    outcome = await engine.invoke(owner, fqn, args, blocking=True, wait_ms=engine.config.api.max_blocking_wait_ms,
                                  transaction_id=request[TRANSACTION])
    if isinstance(outcome, str):
        return web.json_response({"error": "Response not yet ready.", "code": request[TRANSACTION]}, status=202,
                                 headers=CORS_WEB if not custom_options else None)
    response = _project(outcome, extension, request[TRANSACTION])
    if not custom_options:
        response.headers.update({k: v for k, v in CORS_WEB.items() if k not in response.headers})
    return response


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in {"true", "yes"})


async def _check_auth(request: web.Request, required: Any) -> Identity | None:
    if required is True:
        identity = await authenticate(request, required=True)
        return identity
    if isinstance(required, (str, int)) and not isinstance(required, bool) and required != "":
        if request.headers.get("X-Require-Whisk-Auth") != str(required):
            raise Unauthorized("The supplied authentication is invalid")
    try:
        return await authenticate(request, required=False)
    except Unauthorized:
        return None


def _is_binary(content_type: str) -> bool:
    return not (content_type.startswith(_TEXT_TYPES) or content_type.endswith("+json") or content_type == "application/json")


async def _arguments(request: web.Request, extra: str, *, raw: bool) -> tuple[dict[str, Any], set[str]]:
    """The action's arguments, and the names the caller set itself through query or body."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    meta: dict[str, Any] = {"__ow_method": request.method.lower(), "__ow_headers": headers, "__ow_path": extra}
    body = await request.read()
    content_type = request.content_type or ""
    if raw:
        encoded = body.decode("utf-8", "replace") if body and not _is_binary(content_type) and content_type != "application/json" else (
            base64.b64encode(body).decode() if body else "")
        return {**meta, "__ow_query": request.query_string, "__ow_body": encoded}, set()
    args: dict[str, Any] = dict(request.query)
    if body:
        if content_type == "application/json" or content_type.endswith("+json"):
            try:
                value = loads_json(body)
            except ValueError as exc:
                raise BadRequest(f"The request content was malformed:\n{exc}") from exc
            if isinstance(value, dict):
                args.update(value)
            else:
                args["__ow_body"] = value
        elif content_type == "application/x-www-form-urlencoded":
            args.update(dict(parse_qsl(body.decode("utf-8", "replace"))))
        elif _is_binary(content_type):
            args["__ow_body"] = base64.b64encode(body).decode()
        else:
            args["__ow_body"] = body.decode("utf-8", "replace")
    return {**args, **meta}, {k for k in args if k != "__ow_body"}


def _project(record: Activation, extension: str, transaction: str) -> web.Response:
    code = record.response.status_code
    result = record.response.result
    if code in (StatusCode.DEVELOPER_ERROR, StatusCode.WHISK_ERROR):
        return error_response(400, "There was an error processing your request.", transaction)
    if code is StatusCode.APPLICATION_ERROR and isinstance(result, dict):
        result = result.get("error")
    if extension == ".json":
        if isinstance(result, (dict, list)):
            return web.json_response(result)
        return error_response(400, "Response is not valid 'application/json'.", transaction)
    if extension in (".html", ".svg", ".text"):
        field = {".html": "html", ".svg": "svg", ".text": "text"}[extension]
        content_type = {".html": "text/html", ".svg": "image/svg+xml", ".text": "text/plain"}[extension]
        if not isinstance(result, dict) or (field not in result and "body" not in result):
            if extension == ".text":
                return error_response(404, "Response does not include requested property.", transaction)
            return error_response(400, f"Response is not valid '{content_type}'.", transaction)
        value = result.get(field, result.get("body"))
        if isinstance(value, (dict, list)):
            value = json.dumps(value, indent=2)
        elif not isinstance(value, str):
            value = json.dumps(value)
        return web.Response(text=value, content_type=content_type)
    return _http(result, transaction)


def _http(result: Any, transaction: str) -> web.Response:
    if not isinstance(result, dict):
        return error_response(400, "Response is not valid 'message/http'.", transaction)
    headers_in = result.get("headers") or {}
    body = result.get("body")
    try:
        status = int(result.get("statusCode", 200 if body not in (None, "") else 204))
    except (TypeError, ValueError, OverflowError):
        return error_response(400, "Response is not valid 'message/http'.", transaction)
    if body in (None, "") and "statusCode" not in result:
        status = 204
    # Checked here, not left to aiohttp: it would refuse them only while sending, dropping the connection.
    if not 100 <= status <= 599 or not isinstance(headers_in, dict):
        return error_response(400, "Response is not valid 'message/http'.", transaction)
    response = web.Response(status=status)
    content_type = None
    for key, value in headers_in.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = json.dumps(item) if isinstance(item, bool) else str(item)
            if not _HEADER_NAME_RE.match(key) or _HEADER_VALUE_FORBIDDEN_RE.search(text):
                return error_response(400, "Response is not valid 'message/http'.", transaction)
            if key.lower() == "content-type":
                content_type = text
            else:
                response.headers.add(key, text)
    if body is None or body == "":
        return response
    if isinstance(body, str):
        content_type = content_type or "text/html"
        if _is_binary(content_type.split(";")[0]):
            try:
                response.body = base64.b64decode(body)
            except ValueError:
                return error_response(400, "Response is not valid 'message/http'.", transaction)
        else:
            response.body = body.encode()
    else:
        content_type = content_type if content_type and content_type.endswith("json") else "application/json"
        response.body = json.dumps(body).encode()
    response.headers["Content-Type"] = content_type
    return response
