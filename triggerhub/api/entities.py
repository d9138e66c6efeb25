"""Routes for namespaces, actions, triggers, rules and packages (reference 1.3-1.4)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from triggerhub.api import views
from triggerhub.api.app import ENGINE, TRANSACTION, identity_of, json_body
from triggerhub.engine.core import Engine, ensure_object
from triggerhub.engine.explain import explain
from triggerhub.errors import FORBIDDEN, ILLEGAL_NAME, BadRequest, Forbidden, MethodNotAllowed, NotFound
from triggerhub.model import (
    Action, Activation, Collection, Entity, FullyQualifiedName, Identity, Package, Rule, StatusCode, Trigger,
    is_valid_name, params_to_dict, params_to_json,
)

routes = web.RouteTableDef()
MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 30
MAX_LIST_SKIP = 2**31 - 1


def _namespace(request: web.Request, identity: Identity) -> str:
    namespace = request.match_info["namespace"]
    namespace = identity.namespace if namespace == "_" else namespace
    if not is_valid_name(namespace):
        raise BadRequest(ILLEGAL_NAME)
    return namespace


def _name(request: web.Request, namespace: str) -> FullyQualifiedName:
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


def _flag(request: web.Request, key: str) -> bool:
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
    skip = _int_param(request, "skip", 0, collection)
    limit = _int_param(request, "limit", DEFAULT_LIST_LIMIT, collection)
    if not 0 <= skip <= MAX_LIST_SKIP:
        raise BadRequest(f"The value '{skip}' is not in the range of 0 to {MAX_LIST_SKIP} for {collection} "
                         f"(parameter 'skip').")
    if not 0 <= limit <= MAX_LIST_LIMIT:
        raise BadRequest(f"The value '{limit}' is not in the range of 0 to {MAX_LIST_LIMIT} for {collection}.")
    return skip, limit or MAX_LIST_LIMIT


def _engine(request: web.Request) -> Engine:
    return request.app[ENGINE]


# ---------------------------------------------------------------------------- namespaces


@routes.get("/api/v1/namespaces")
@routes.get("/api/v1/namespaces/")
async def list_namespaces(request: web.Request) -> web.Response:
    return web.json_response([identity_of(request).namespace])


@routes.get("/api/v1/namespaces/{namespace}/limits")
async def namespace_limits(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if _namespace(request, identity) != identity.namespace:
        raise Forbidden(FORBIDDEN)
    limits = _engine(request).config.limits
    defaults = {
        "invocationsPerMinute": limits.invocations_per_minute, "concurrentInvocations": limits.concurrent_invocations,
        "firesPerMinute": limits.fires_per_minute, "maxActionMemory": limits.max_memory_mb * 1024 * 1024,
        "minActionMemory": limits.min_memory_mb * 1024 * 1024, "maxActionLogs": limits.max_logs_mb * 1024 * 1024,
        "minActionLogs": limits.min_logs_mb * 1024 * 1024, "maxActionTimeout": limits.max_timeout_ms,
        "minActionTimeout": limits.min_timeout_ms, "maxActionConcurrency": 1, "minActionConcurrency": 1,
        "maxParameterSize": limits.max_parameter_bytes, "maxActionInstances": limits.concurrent_invocations,
    }
    return web.json_response({**defaults, **identity.limits})


# ---------------------------------------------------------------------------- lists


async def _list(request: web.Request, collection: Collection, package: str | None = None) -> web.Response:
    identity = identity_of(request)
    namespace = _namespace(request, identity)
    engine = _engine(request)
    if _flag(request, "count"):
        return web.json_response({collection.value: await engine.entities.count(identity, collection, namespace)})
    skip, limit = list_window(request, collection.value)
    entities = await engine.entities.listing(identity, collection, namespace, package, skip, limit)
    return web.json_response([await _summary(engine, e) for e in entities])


async def _summary(engine: Engine, entity: Entity) -> dict[str, Any]:
    if isinstance(entity, Action):
        return views.action_summary(entity)
    if isinstance(entity, Trigger):
        return views.trigger_summary(entity)
    if isinstance(entity, Rule):
        return views.rule_json(entity, await engine.entities.rule_status(entity))
    assert isinstance(entity, Package)
    return views.package_summary(entity)


for _collection in Collection:
    async def _list_handler(request: web.Request, _c: Collection = _collection) -> web.Response:
        return await _list(request, _c)
    routes.get(f"/api/v1/namespaces/{{namespace}}/{_collection.value}")(_list_handler)
    routes.get(f"/api/v1/namespaces/{{namespace}}/{_collection.value}/")(_list_handler)


@routes.get("/api/v1/namespaces/{namespace}/actions/{package}/")
async def list_package_actions(request: web.Request) -> web.Response:
    return await _list(request, Collection.ACTIONS, request.match_info["package"])


# ---------------------------------------------------------------------------- actions


@routes.route("*", "/api/v1/namespaces/{namespace}/actions/{name:.+}")
async def action_route(request: web.Request) -> web.Response:
    identity = identity_of(request)
    fqn = _name(request, _namespace(request, identity))
    engine = _engine(request)
    if request.method == "GET":
        action = await engine.entities.get(identity, fqn, Collection.ACTIONS)
        assert isinstance(action, Action)
        return web.json_response(views.action_json(action, include_code=request.query.get("code", "true") != "false"))
    if request.method == "PUT":
        body = ensure_object(await json_body(request, engine.config.api.max_code_bytes + 1024 * 1024))
        action = await engine.entities.put_action(identity, fqn, body, _flag(request, "overwrite"))
        return web.json_response(views.action_json(action))
    if request.method == "DELETE":
        action = await engine.entities.delete(identity, fqn, Collection.ACTIONS)
        return web.json_response(views.action_json(action))  # type: ignore[arg-type]
    if request.method == "POST":
        return await _invoke(request, engine, identity, fqn)
    raise MethodNotAllowed("Method Not Allowed")


async def _invoke(request: web.Request, engine: Engine, identity: Identity, fqn: FullyQualifiedName) -> web.Response:
    payload = await json_body(request)
    if payload is not None and not isinstance(payload, dict):
        raise BadRequest("The request content was malformed:\nexpected a JSON object")
    blocking = _flag(request, "blocking")
    wait_ms = engine.config.api.max_blocking_wait_ms
    if "timeout" in request.query:
        try:
            wait_ms = int(request.query["timeout"])
        except ValueError:
            wait_ms = -1
        if not 0 < wait_ms <= engine.config.api.max_blocking_wait_ms:
            raise BadRequest("Timeout must be number of milliseconds up to 60000.")
    outcome = await engine.invoke(identity, fqn, payload or {}, blocking=blocking, wait_ms=wait_ms,
                                  transaction_id=request[TRANSACTION])
    if isinstance(outcome, str):
        return _accepted(outcome)
    return _blocking_response(outcome, _flag(request, "result"))


def _accepted(activation_id: str) -> web.Response:
    return web.json_response({"activationId": activation_id}, status=202,
                             headers={"x-openwhisk-activation-id": activation_id})


def _blocking_response(record: Activation, result_only: bool) -> web.Response:
    status = {StatusCode.SUCCESS: 200, StatusCode.APPLICATION_ERROR: 502,
              StatusCode.DEVELOPER_ERROR: 502, StatusCode.WHISK_ERROR: 500}[record.response.status_code]
    headers = {"x-openwhisk-activation-id": record.activation_id}
    result = record.response.result
    if isinstance(result, list):
        return web.json_response(result, status=status, headers=headers)
    body = result if result_only else views.activation_json(record)
    return web.json_response(body if body is not None else {}, status=status, headers=headers)


# ---------------------------------------------------------------------------- triggers


@routes.route("*", "/api/v1/namespaces/{namespace}/triggers/{name}")
async def trigger_route(request: web.Request) -> web.Response:
    identity = identity_of(request)
    fqn = _name(request, _namespace(request, identity))
    engine = _engine(request)
    if request.method == "GET":
        trigger = await engine.entities.get(identity, fqn, Collection.TRIGGERS)
        return web.json_response(views.trigger_json(trigger))  # type: ignore[arg-type]
    if request.method == "PUT":
        body = ensure_object(await json_body(request))
        trigger = await engine.entities.put_trigger(identity, fqn, body, _flag(request, "overwrite"))
        return web.json_response(views.trigger_json(trigger))
    if request.method == "DELETE":
        trigger = await engine.entities.delete(identity, fqn, Collection.TRIGGERS)
        return web.json_response(views.trigger_json(trigger))  # type: ignore[arg-type]
    if request.method == "POST":
        payload = await json_body(request)
        if payload is not None and not isinstance(payload, dict):
            raise BadRequest("The request content was malformed:\nexpected a JSON object")
        activation_id = await engine.fire(identity, fqn, payload or {})
        if activation_id is None:
            return web.Response(status=204)
        return _accepted(activation_id)
    raise MethodNotAllowed("Method Not Allowed")


# ---------------------------------------------------------------------------- rules


@routes.post("/api/v1/namespaces/{namespace}/rules/{name}/explain")
async def explain_rule(request: web.Request) -> web.Response:
    """Why the rule would run for an event, or did not run for a stored one; nothing runs."""
    identity = identity_of(request)
    fqn = _name(request, _namespace(request, identity))
    engine = _engine(request)
    return web.json_response(await explain(engine.entities, engine.store, identity, fqn, await json_body(request)))


@routes.route("*", "/api/v1/namespaces/{namespace}/rules/{name}")
async def rule_route(request: web.Request) -> web.Response:
    identity = identity_of(request)
    fqn = _name(request, _namespace(request, identity))
    engine = _engine(request)
    if request.method == "GET":
        rule = await engine.entities.get(identity, fqn, Collection.RULES)
        assert isinstance(rule, Rule)
        counts = await engine.store.get_rule_counts(f"{rule.namespace}/{rule.name}") if rule.filter is not None else None
        return web.json_response(views.rule_json(rule, await engine.entities.rule_status(rule), counts))
    if request.method == "PUT":
        body = ensure_object(await json_body(request))
        rule = await engine.entities.put_rule(identity, fqn, body, _flag(request, "overwrite"))
        return web.json_response(views.rule_json(rule, await engine.entities.rule_status(rule)))
    if request.method == "DELETE":
        rule = await engine.entities.delete(identity, fqn, Collection.RULES)
        assert isinstance(rule, Rule)
        return web.json_response(views.rule_json(rule, await engine.entities.rule_status(rule)))
    if request.method == "POST":
        rule = await engine.entities.set_rule_status(identity, fqn, await json_body(request))
        return web.json_response(views.rule_json(rule, await engine.entities.rule_status(rule)))
    raise MethodNotAllowed("Method Not Allowed")


# ---------------------------------------------------------------------------- packages


@routes.route("*", "/api/v1/namespaces/{namespace}/packages/{name}")
async def package_route(request: web.Request) -> web.Response:
    identity = identity_of(request)
    fqn = _name(request, _namespace(request, identity))
    engine = _engine(request)
    if request.method == "GET":
        package = await engine.entities.get(identity, fqn, Collection.PACKAGES)
        assert isinstance(package, Package)
        return web.json_response(await _package_view(engine, package))
    if request.method == "PUT":
        body = ensure_object(await json_body(request))
        package = await engine.entities.put_package(identity, fqn, body, _flag(request, "overwrite"))
        return web.json_response(await _package_view(engine, package))
    if request.method == "DELETE":
        package = await engine.entities.delete(identity, fqn, Collection.PACKAGES, force=_flag(request, "force"))
        assert isinstance(package, Package)
        return web.json_response(views.package_json(package, []))
    raise MethodNotAllowed("Method Not Allowed")


async def _package_view(engine: Engine, package: Package) -> dict[str, Any]:
    """A binding shows the bound package's members, with binding params over package params."""
    source = package
    parameters = None
    if package.binding is not None:
        bound = await engine.store.get_entity(package.binding.namespace, package.binding.name)
        if isinstance(bound, Package):
            source = bound
            merged = {**params_to_dict(bound.parameters), **params_to_dict(package.parameters)}
            parameters = [{"key": k, "value": v} for k, v in merged.items()]
    members = await engine.store.list_entities(Collection.ACTIONS, source.namespace, package=source.name, limit=100_000)
    return views.package_json(package, [m for m in members if isinstance(m, Action)],
                              parameters if parameters is not None else params_to_json(package.parameters))
