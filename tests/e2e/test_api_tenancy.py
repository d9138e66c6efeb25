"""Two namespaces on one hub: every entity a request names is authorised (rule trigger and action,
sequence components, package bindings, feeds, actions reached through packages), with
OpenWhisk's 403 and the same answer whether another namespace's private entity exists or not."""

from __future__ import annotations

import json
from dataclasses import replace

from tests.plugins.waiting import wait_record
from triggerhub.engine.auth import create_subject
from triggerhub.errors import FORBIDDEN
from triggerhub.model import FullyQualifiedName, ReducedRule, RuleStatus

ECHO = "def main(args):\n    return args\n"
EXFIL = "def main(args):\n    return {'stolen': args}\n"


def not_authorized(*names):
    return f"The supplied authentication is not authorized to access '{', '.join(names)}'."


async def put_as(hub, auth, path, body, **query):
    status, response = await hub.call("PUT", path, body, auth=auth, **query)
    assert status == 200, response
    return response


async def two_tenants(hub):
    """guest (A) with a private trigger, action and package; mallory (B) with a package and action."""
    mallory = (await create_subject(hub.hub.engine.store, "mallory")).auth_key
    await put_as(hub, hub.auth, "namespaces/guest/triggers/t", {"parameters": [{"key": "secret", "value": "s3"}]})
    await put_as(hub, hub.auth, "namespaces/guest/actions/private", {"exec": {"kind": "python:default", "code": ECHO}})
    await put_as(hub, hub.auth, "namespaces/guest/packages/lib", {})
    await put_as(hub, hub.auth, "namespaces/guest/actions/lib/inner", {"exec": {"kind": "python:default", "code": ECHO}})
    await put_as(hub, mallory, "namespaces/mallory/packages/pkg", {})
    await put_as(hub, mallory, "namespaces/mallory/actions/pkg/exfil", {"exec": {"kind": "python:default", "code": EXFIL}})
    await put_as(hub, mallory, "namespaces/mallory/triggers/mt", {})
    return mallory


async def test_rule_on_another_namespaces_trigger_is_refused_and_writes_nothing(hub):
    mallory = await two_tenants(hub)
    status, body = await hub.call("PUT", "namespaces/mallory/rules/hijack",
                                  {"trigger": "/guest/t", "action": "/mallory/pkg/exfil"}, auth=mallory)
    assert (status, body["error"]) == (403, not_authorized("guest/t"))
    assert set(body) == {"error", "code"}
    status, _ = await hub.call("GET", "namespaces/mallory/rules/hijack", auth=mallory)
    assert status == 404
    status, trigger = await hub.call("GET", "namespaces/_/triggers/t")
    assert status == 200 and "rules" not in trigger
    status, fired = await hub.call("POST", "namespaces/_/triggers/t", {"x": 1})
    assert (status, fired) == (204, None)

    # The same answer for a trigger that does not exist: no existence oracle.
    status, body = await hub.call("PUT", "namespaces/mallory/rules/hijack",
                                  {"trigger": "/guest/absent", "action": "/mallory/pkg/exfil"}, auth=mallory)
    assert (status, body["error"]) == (403, not_authorized("guest/absent"))
    # An update cannot move an existing rule onto another namespace's trigger either.
    await put_as(hub, mallory, "namespaces/mallory/rules/mine", {"trigger": "mt", "action": "pkg/exfil"})
    status, body = await hub.call("PUT", "namespaces/mallory/rules/mine", {"trigger": "/guest/t"}, auth=mallory,
                                  overwrite=True)
    assert (status, body["error"]) == (403, not_authorized("guest/t"))
    status, rule = await hub.call("GET", "namespaces/mallory/rules/mine", auth=mallory)
    assert rule["trigger"] == {"path": "mallory", "name": "mt"}


async def test_private_actions_of_another_namespace_answer_403_present_or_absent(hub):
    mallory = await two_tenants(hub)
    for name in ("/guest/private", "/guest/absent", "/guest/lib/inner", "/guest/lib/absent", "/guest/nopkg/inner"):
        status, body = await hub.call("PUT", "namespaces/mallory/rules/r", {"trigger": "mt", "action": name},
                                      auth=mallory)
        assert (status, body["error"]) == (403, not_authorized(name[1:])), name
        status, body = await hub.call("PUT", "namespaces/mallory/actions/seq",
                                      {"exec": {"kind": "sequence", "components": ["pkg/exfil", name]}}, auth=mallory)
        assert (status, body["error"]) == (403, not_authorized(name[1:])), name
    status, body = await hub.call("PUT", "namespaces/mallory/rules/r", {"trigger": "/guest/t", "action": "/guest/private"},
                                  auth=mallory)
    assert (status, body["error"]) == (403, not_authorized("guest/private", "guest/t"))
    for path in ("rules/r", "actions/seq"):
        status, _ = await hub.call("GET", f"namespaces/mallory/{path}", auth=mallory)
        assert status == 404, path

    # Own absent names keep OpenWhisk's 400s; shared packages stay usable.
    status, body = await hub.call("PUT", "namespaces/mallory/rules/r", {"trigger": "mt", "action": "absent"}, auth=mallory)
    assert (status, body["error"]) == (400, "action /mallory/absent does not exist")
    status, body = await hub.call("PUT", "namespaces/mallory/actions/seq",
                                  {"exec": {"kind": "sequence", "components": ["absent"]}}, auth=mallory)
    assert (status, body["error"]) == (400, "Sequence component does not exist.")
    await put_as(hub, mallory, "namespaces/mallory/actions/seq",
                 {"exec": {"kind": "sequence", "components": ["/whisk.system/utils/echo", "pkg/exfil"]}})
    await put_as(hub, mallory, "namespaces/mallory/rules/r", {"trigger": "mt", "action": "/whisk.system/utils/echo"})
    status, result = await hub.call("POST", "namespaces/mallory/actions/seq", {"a": 1}, auth=mallory, blocking=True,
                                    result=True)
    assert (status, result) == (200, {"stolen": {"a": 1}})


async def test_bindings_and_packages_of_another_namespace(hub):
    mallory = await two_tenants(hub)
    await put_as(hub, hub.auth, "namespaces/guest/packages/shared", {"publish": True})
    await put_as(hub, hub.auth, "namespaces/guest/actions/shared/hello", {"exec": {"kind": "python:default", "code": ECHO}})
    for name in ("lib", "absent"):
        status, body = await hub.call("PUT", "namespaces/mallory/packages/bind",
                                      {"binding": {"namespace": "guest", "name": name}}, auth=mallory)
        assert (status, body["error"]) == (403, not_authorized(f"guest/{name}")), name
    status, body = await hub.call("PUT", "namespaces/mallory/packages/bind",
                                  {"binding": {"namespace": "guest", "name": "t"}}, auth=mallory)
    assert (status, body["error"]) == (403, not_authorized("guest/t"))  # a trigger, not a package: still 403
    await put_as(hub, mallory, "namespaces/mallory/packages/bind", {"binding": {"namespace": "guest", "name": "shared"}})
    status, result = await hub.call("POST", "namespaces/mallory/actions/bind/hello", {"v": 1}, auth=mallory,
                                    blocking=True, result=True)
    assert (status, result) == (200, {"v": 1})

    # Unpublished later: the binding no longer reaches it.
    await put_as(hub, hub.auth, "namespaces/guest/packages/shared", {"publish": False}, overwrite=True)
    status, body = await hub.call("POST", "namespaces/mallory/actions/bind/hello", {}, auth=mallory, blocking=True)
    assert (status, body["error"]) == (403, FORBIDDEN)
    status, body = await hub.call("GET", "namespaces/mallory/actions/bind/", auth=mallory)
    assert (status, body["error"]) == (403, FORBIDDEN)

    # A published binding does not share the private package it binds.
    await put_as(hub, hub.auth, "namespaces/guest/packages/front", {"publish": True, "binding": {"name": "lib"}})
    status, body = await hub.call("POST", "namespaces/guest/actions/front/inner", {}, auth=mallory, blocking=True)
    assert (status, body["error"]) == (403, FORBIDDEN)
    for path in ("actions/front/", "actions/front/inner", "packages/front"):
        status, body = await hub.call("GET", f"namespaces/guest/{path}", auth=mallory)
        assert (status, body["error"]) == (403, FORBIDDEN), path
    status, result = await hub.call("POST", "namespaces/guest/actions/front/inner", {"own": 1}, blocking=True, result=True)
    assert (status, result) == (200, {"own": 1})  # the owner still can


async def test_feed_of_a_trigger_must_be_readable(hub):
    mallory = await two_tenants(hub)
    for feed in ("/guest/lib/inner", "/guest/absent/feed", "/guest/private"):
        status, body = await hub.call("PUT", "namespaces/mallory/triggers/ft",
                                      {"annotations": [{"key": "feed", "value": feed}]}, auth=mallory)
        assert (status, body["error"]) == (403, not_authorized(feed[1:])), feed
    status, _ = await hub.call("GET", "namespaces/mallory/triggers/ft", auth=mallory)
    assert status == 404
    created = await put_as(hub, mallory, "namespaces/mallory/triggers/ft",
                           {"annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]})
    assert created["annotations"] == [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]

    # A feed action cannot be pointed at another namespace's trigger.
    status, record = await hub.call("POST", "namespaces/whisk.system/actions/alarms/alarm", {
        "lifecycleEvent": "CREATE", "triggerName": "/guest/t", "authKey": mallory, "cron": "* * * * *"},
        auth=mallory, blocking=True)
    assert (status, record["response"]["result"]) == (502, {"error": FORBIDDEN})
    assert await hub.hub.engine.store.get_feed("/guest/t") is None


async def test_rule_left_on_a_trigger_by_an_older_hub_is_not_run(hub):
    """A hub before this fix could write another namespace's rule into a trigger: it is never run."""
    mallory = await two_tenants(hub)
    await put_as(hub, mallory, "namespaces/mallory/packages/pkg", {"publish": True}, overwrite=True)
    engine = hub.hub.engine
    trigger = await engine.store.get_entity("guest", "t")
    hijack = ReducedRule(FullyQualifiedName("mallory", "exfil", "pkg"), RuleStatus.ACTIVE)
    await engine.store.put_entities([replace(trigger, rules={"mallory/hijack": hijack})])
    engine.entities.forget([trigger])
    status, fired = await hub.call("POST", "namespaces/_/triggers/t", {"x": 1})
    assert status == 202
    record = await wait_record(hub, fired["activationId"])
    assert [json.loads(line) for line in record["logs"]] == [{
        "rule": "mallory/hijack", "action": "mallory/pkg/exfil", "statusCode": 1, "success": False,
        "error": "rule mallory/hijack is not in namespace guest of the trigger and is not run"}]
    status, count = await hub.call("GET", "namespaces/mallory/activations", auth=mallory, count=True)
    assert (status, count) == (200, {"activations": 0})
    status, count = await hub.call("GET", "namespaces/guest/activations", count=True)
    assert (status, count) == (200, {"activations": 1})  # the trigger's own record only
