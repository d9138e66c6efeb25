"""Routes for namespaces, actions, triggers, rules and packages (reference 1.3-1.4).

One handler per route and method; the collection lists are generated from `LISTS`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web

from triggerhub.api import views
from triggerhub.api.context import (
    TRANSACTION, engine_of, flag, identity_of, json_body, list_window, name_of, namespace_of, one_revalidation,
)
from triggerhub.engine.core import Engine, ensure_object
from triggerhub.errors import FORBIDDEN, BadRequest, Forbidden, MethodNotAllowed
from triggerhub.model import (
    Action, Activation, Collection, Entity, FullyQualifiedName, Identity, Package, Rule, StatusCode,
    Trigger, params_to_json,
)

E = TypeVar("E", Action, Trigger, Rule, Package)
NAMESPACE = "/api/v1/namespaces/{namespace}"
ACTION = f"{NAMESPACE}/actions/{{name:.+}}"
TRIGGER = f"{NAMESPACE}/triggers/{{name}}"
RULE = f"{NAMESPACE}/rules/{{name}}"
PACKAGE = f"{NAMESPACE}/packages/{{name}}"


async def _target(request: web.Request) -> tuple[Engine, Identity, FullyQualifiedName]:
    """The engine, the caller and the entity the path names."""
    identity = identity_of(request)
    return engine_of(request), identity, name_of(request, namespace_of(request, identity))


async def _get(request: web.Request, kind: type[E]) -> E:
    engine, identity, fqn = await _target(request)
    return await engine.entities.get(identity, fqn, kind)


async def _delete(request: web.Request, kind: type[E]) -> E:
    engine, identity, fqn = await _target(request)
    return await engine.entities.delete(identity, fqn, kind, force=flag(request, "force"))


async def _put_body(request: web.Request, limit_bytes: int | None = None) -> dict[str, Any]:
    return ensure_object(await json_body(request, limit_bytes))


async def _payload(request: web.Request) -> dict[str, Any]:
    """An invoke's or fire's arguments: a JSON object, or nothing."""
    payload = await json_body(request)
    if payload is not None and not isinstance(payload, dict):
        raise BadRequest("The request content was malformed:\nexpected a JSON object")
    return payload or {}


# ---------------------------------------------------------------------------- namespaces


async def list_namespaces(request: web.Request) -> web.Response:
    return web.json_response([identity_of(request).namespace])


async def namespace_limits(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if namespace_of(request, identity) != identity.namespace:
        raise Forbidden(FORBIDDEN)
    limits = engine_of(request).config.limits
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
    namespace = namespace_of(request, identity)
    engine = engine_of(request)
    if flag(request, "count"):
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
        return await _rule_json(engine, entity)
    return views.package_summary(entity)


def _lister(collection: Collection) -> web.RouteDef:
    async def list_collection(request: web.Request) -> web.Response:
        return await _list(request, collection)
    return web.get(f"{NAMESPACE}/{collection.value}", list_collection)


async def list_package_actions(request: web.Request) -> web.Response:
    return await _list(request, Collection.ACTIONS, request.match_info["package"])


# ---------------------------------------------------------------------------- actions


async def get_action(request: web.Request) -> web.Response:
    action = await _get(request, Action)
    return web.json_response(views.action_json(action, include_code=request.query.get("code", "true") != "false"))


async def put_action(request: web.Request) -> web.Response:
    engine, identity, fqn = await _target(request)
    body = await _put_body(request, engine.config.api.max_code_bytes + 1024 * 1024)
    action = await engine.entities.put_action(identity, fqn, body, overwrite=flag(request, "overwrite"))
    return web.json_response(views.action_json(action))


async def delete_action(request: web.Request) -> web.Response:
    return web.json_response(views.action_json(await _delete(request, Action)))


@one_revalidation
async def invoke_action(request: web.Request) -> web.Response:
    engine, identity, fqn = await _target(request)
    payload = await _payload(request)
    blocking = flag(request, "blocking")
    wait_ms = engine.config.api.max_blocking_wait_ms
    if "timeout" in request.query:
        try:
            wait_ms = int(request.query["timeout"])
        except ValueError:
            wait_ms = -1
        if not 0 < wait_ms <= engine.config.api.max_blocking_wait_ms:
            raise BadRequest("Timeout must be number of milliseconds up to 60000.")
    outcome = await engine.invoke(identity, fqn, payload, blocking=blocking, wait_ms=wait_ms,
                                  transaction_id=request[TRANSACTION])
    if isinstance(outcome, str):
        return _accepted(outcome)
    return _blocking_response(outcome, result_only=flag(request, "result"))


def _accepted(activation_id: str) -> web.Response:
    # the body json.dumps would write: an activation id is 32 hex digits (no escaping)
    return web.Response(body=b'{"activationId": "%s"}' % activation_id.encode(), status=202,
                        content_type="application/json", charset="utf-8",
                        headers={"x-openwhisk-activation-id": activation_id})


def _blocking_response(record: Activation, *, result_only: bool) -> web.Response:
    status = {StatusCode.SUCCESS: 200, StatusCode.APPLICATION_ERROR: 502,
              StatusCode.DEVELOPER_ERROR: 502, StatusCode.WHISK_ERROR: 500}[record.response.status_code]
    headers = {"x-openwhisk-activation-id": record.activation_id}
    result = record.response.result
    if isinstance(result, list):
        return web.json_response(result, status=status, headers=headers)
    body = result if result_only else views.activation_json(record)
    return web.json_response(body if body is not None else {}, status=status, headers=headers)


# ---------------------------------------------------------------------------- triggers


async def get_trigger(request: web.Request) -> web.Response:
    return web.json_response(views.trigger_json(await _get(request, Trigger)))


async def put_trigger(request: web.Request) -> web.Response:
    engine, identity, fqn = await _target(request)
    trigger = await engine.entities.put_trigger(identity, fqn, await _put_body(request), overwrite=flag(request, "overwrite"))
    return web.json_response(views.trigger_json(trigger))


async def delete_trigger(request: web.Request) -> web.Response:
    return web.json_response(views.trigger_json(await _delete(request, Trigger)))


@one_revalidation
async def fire_trigger(request: web.Request) -> web.Response:
    engine, identity, fqn = await _target(request)
    activation_id = await engine.fire(identity, fqn, await _payload(request))
    if activation_id is None:
        return web.Response(status=204)
    return _accepted(activation_id)


# ---------------------------------------------------------------------------- rules


async def _rule_json(engine: Engine, rule: Rule) -> dict[str, Any]:
    return views.rule_json(rule, await engine.entities.rule_status(rule))


async def get_rule(request: web.Request) -> web.Response:
    """The only rule answer carrying `counts` (on rules with a filter)."""
    engine = engine_of(request)
    rule = await _get(request, Rule)
    counts = await engine.entities.rule_counts(rule)
    return web.json_response(views.rule_json(rule, await engine.entities.rule_status(rule), counts))


async def put_rule(request: web.Request) -> web.Response:
    engine, identity, fqn = await _target(request)
    rule = await engine.entities.put_rule(identity, fqn, await _put_body(request), overwrite=flag(request, "overwrite"))
    return web.json_response(await _rule_json(engine, rule))


async def delete_rule(request: web.Request) -> web.Response:
    return web.json_response(await _rule_json(engine_of(request), await _delete(request, Rule)))


async def set_rule_state(request: web.Request) -> web.Response:
    engine, identity, fqn = await _target(request)
    rule = await engine.entities.set_rule_status(identity, fqn, await json_body(request))
    return web.json_response(await _rule_json(engine, rule))


async def explain_rule(request: web.Request) -> web.Response:
    """Why the rule would run for an event, or did not run for a stored one; nothing runs."""
    engine, identity, fqn = await _target(request)
    return web.json_response(await engine.explain(identity, fqn, await json_body(request)))


async def replay_rule(request: web.Request) -> web.Response:
    """Run stored events through the rule as it is now; counts per event (engine/replay.py)."""
    engine, identity, fqn = await _target(request)
    return web.json_response(await engine.replay(identity, fqn, await json_body(request)))


# ---------------------------------------------------------------------------- packages


async def _package_json(engine: Engine, package: Package) -> dict[str, Any]:
    """A binding shows the bound package's members, with binding params over package params."""
    contents = await engine.entities.package_contents(package)
    parameters = (params_to_json(package.parameters) if contents.parameters is None
                  else [{"key": k, "value": v} for k, v in contents.parameters.items()])
    return views.package_json(package, list(contents.actions), parameters)


async def get_package(request: web.Request) -> web.Response:
    return web.json_response(await _package_json(engine_of(request), await _get(request, Package)))


async def put_package(request: web.Request) -> web.Response:
    engine, identity, fqn = await _target(request)
    package = await engine.entities.put_package(identity, fqn, await _put_body(request), overwrite=flag(request, "overwrite"))
    return web.json_response(await _package_json(engine, package))


async def delete_package(request: web.Request) -> web.Response:
    return web.json_response(views.package_json(await _delete(request, Package), []))


# ---------------------------------------------------------------------------- the route table


async def method_not_allowed(request: web.Request) -> web.Response:
    """Any other method on an entity: 405 once its path names check out. Without this route the
    request would fall through to the API gateway's catch-all under /api/ and be a 404."""
    await _target(request)
    raise MethodNotAllowed("Method Not Allowed")


# An entity's GET takes no HEAD (allow_head=False): HEAD, like every method without a handler, is
# method_not_allowed's.
LISTS = [_lister(collection) for collection in Collection]
routes = [
    web.get("/api/v1/namespaces", list_namespaces),
    web.get("/api/v1/namespaces/", list_namespaces),
    web.get(f"{NAMESPACE}/limits", namespace_limits),
    *LISTS,
    *[web.get(f"{route.path}/", route.handler) for route in LISTS],
    web.get(f"{NAMESPACE}/actions/{{package}}/", list_package_actions),  # before ACTION, which also matches it
    web.get(ACTION, get_action, allow_head=False),
    web.put(ACTION, put_action),
    web.delete(ACTION, delete_action),
    web.post(ACTION, invoke_action),
    web.route("*", ACTION, method_not_allowed),
    web.get(TRIGGER, get_trigger, allow_head=False),
    web.put(TRIGGER, put_trigger),
    web.delete(TRIGGER, delete_trigger),
    web.post(TRIGGER, fire_trigger),
    web.route("*", TRIGGER, method_not_allowed),
    web.get(RULE, get_rule, allow_head=False),
    web.put(RULE, put_rule),
    web.delete(RULE, delete_rule),
    web.post(RULE, set_rule_state),
    web.route("*", RULE, method_not_allowed),
    web.post(f"{RULE}/explain", explain_rule),
    web.post(f"{RULE}/replay", replay_rule),
    web.get(PACKAGE, get_package, allow_head=False),
    web.put(PACKAGE, put_package),
    web.delete(PACKAGE, delete_package),
    web.route("*", PACKAGE, method_not_allowed),
]
