"""Triggers, rules, sequences, packages and activation queries through the REST API."""

from __future__ import annotations

import json

from tests.plugins.hub import put_action
from tests.plugins.waiting import wait_record
from triggerhub.engine.auth import create_subject

ADD = "def main(args):\n    return {'n': args.get('n', 0) + %d}\n"
ECHO = "def main(args):\n    return args\n"


async def put(hub, collection, name, body, **query):
    status, response = await hub.call("PUT", f"namespaces/_/{collection}/{name}", body, **query)
    assert status == 200, response
    return response


async def test_fire_without_rules_is_204(hub):
    await put(hub, "triggers", "lonely", {})
    status, body = await hub.call("POST", "namespaces/_/triggers/lonely", {"x": 1})
    assert (status, body) == (204, None)
    status, count = await hub.call("GET", "namespaces/_/activations", count=True)
    assert count == {"activations": 0}


async def test_trigger_two_rules_one_to_sequence(hub):
    for i in (1, 2, 3):
        await put_action(hub, f"add{i}", ADD % i, "python:default")
    await put_action(hub, "echo", ECHO, "python:default")
    seq = await put(hub, "actions", "pipeline", {"exec": {"kind": "sequence", "components": ["add1", "/_/add2", "/guest/add3"]}})
    assert seq["exec"] == {"kind": "sequence", "components": ["/guest/add1", "/guest/add2", "/guest/add3"]}
    assert seq["parameters"] == [{"key": "_actions", "value": ["/guest/add1", "/guest/add2", "/guest/add3"]}]
    trigger = await put(hub, "triggers", "t", {"parameters": [{"key": "n", "value": 10}]})
    assert trigger["parameters"] == [{"key": "n", "value": 10}]
    rule = await put(hub, "rules", "r-seq", {"trigger": "/_/t", "action": "/_/pipeline"})
    assert rule["status"] == "active"
    assert rule["trigger"] == {"path": "guest", "name": "t"} and rule["action"] == {"path": "guest", "name": "pipeline"}
    await put(hub, "rules", "r-echo", {"trigger": "t", "action": "echo"})

    status, fired = await hub.call("POST", "namespaces/_/triggers/t", {"n": 100})
    assert status == 202
    trigger_record = await wait_record(hub, fired["activationId"])
    assert trigger_record["name"] == "t" and "end" not in trigger_record and "duration" not in trigger_record
    assert trigger_record["response"]["result"] == {"n": 100}
    outcomes = sorted((json.loads(line) for line in trigger_record["logs"]), key=lambda o: o["rule"])
    assert [(o["rule"], o["action"], o["statusCode"], o["success"]) for o in outcomes] == [
        ("guest/r-echo", "guest/echo", 0, True), ("guest/r-seq", "guest/pipeline", 0, True)]

    sequence = await wait_record(hub, outcomes[1]["activationId"])
    assert sequence["response"]["result"] == {"n": 106}
    assert len(sequence["logs"]) == 3
    annotations = {a["key"]: a["value"] for a in sequence["annotations"]}
    assert annotations["kind"] == "sequence" and annotations["topmost"] is True and annotations["path"] == "guest/pipeline"
    components = [await wait_record(hub, cid) for cid in sequence["logs"]]
    assert [c["name"] for c in components] == ["add1", "add2", "add3"]
    assert all(c["cause"] == sequence["activationId"] for c in components)
    assert [c["response"]["result"] for c in components] == [{"n": 101}, {"n": 103}, {"n": 106}]
    assert sequence["duration"] == sum(c["duration"] for c in components)
    echo = await wait_record(hub, outcomes[0]["activationId"])
    assert echo["response"]["result"] == {"n": 100}  # payload over trigger parameters


async def test_rule_enable_disable(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "t", {})
    await put(hub, "rules", "r", {"trigger": "t", "action": "echo"})
    status, body = await hub.call("POST", "namespaces/_/rules/r", {"status": "inactive"})
    assert (status, body["status"]) == (200, "inactive")
    status, _ = await hub.call("POST", "namespaces/_/triggers/t", {})
    assert status == 204
    status, body = await hub.call("POST", "namespaces/_/rules/r", {"status": "paused"})
    assert (status, body["error"]) == (400, "'paused' is not a recognized rule state, must be one of ['active', 'inactive']")
    status, body = await hub.call("POST", "namespaces/_/rules/r", {"status": "active"})
    assert (status, body["status"]) == (200, "active")
    status, _ = await hub.call("POST", "namespaces/_/triggers/t", {})
    assert status == 202
    status, listing = await hub.call("GET", "namespaces/_/rules")
    assert [(r["name"], r["status"]) for r in listing] == [("r", "active")]


async def test_rule_and_sequence_validation(hub):
    await put(hub, "triggers", "t", {})
    status, body = await hub.call("PUT", "namespaces/_/rules/r", {"trigger": "t", "action": "missing"})
    assert (status, body["error"]) == (400, "action /guest/missing does not exist")
    status, body = await hub.call("PUT", "namespaces/_/rules/r", {"trigger": "t"})
    assert (status, body["error"]) == (400, "rule requires a valid trigger and a valid action")
    status, body = await hub.call("PUT", "namespaces/_/actions/s", {"exec": {"kind": "sequence", "components": ["/_/s"]}})
    assert (status, body["error"]) == (400, "Sequence may not refer to itself.")
    status, body = await hub.call("PUT", "namespaces/_/actions/s", {"exec": {"kind": "sequence", "components": ["nope"]}})
    assert (status, body["error"]) == (400, "Sequence component does not exist.")
    status, body = await hub.call("PUT", "namespaces/_/actions/s", {"exec": {"kind": "sequence", "components": []}})
    assert (status, body["error"]) == (400, "No component specified for the sequence.")
    status, body = await hub.call("PUT", "namespaces/_/rules/t", {"trigger": "t", "action": "x"})
    assert (status, body["error"]) == (409, "Resource by this name exists but is not in this collection.")


async def test_packages_bindings_and_parameter_order(hub):
    await put(hub, "packages", "lib", {"parameters": [{"key": "a", "value": "pkg"}, {"key": "b", "value": "pkg"},
                                                      {"key": "c", "value": "pkg"}, {"key": "d", "value": "pkg"}]})
    await put(hub, "actions", "lib/show", {"exec": {"kind": "python:default", "code": ECHO},
                                           "parameters": [{"key": "c", "value": "action"}, {"key": "d", "value": "action"}]})
    await put(hub, "packages", "mine", {"binding": {"namespace": "_", "name": "lib"},
                                        "parameters": [{"key": "b", "value": "binding"}, {"key": "c", "value": "binding"}]})
    status, result = await hub.call("POST", "namespaces/_/actions/mine/show", {"d": "payload"}, blocking=True, result=True)
    assert (status, result) == (200, {"a": "pkg", "b": "binding", "c": "action", "d": "payload"})
    status, binding = await hub.call("GET", "namespaces/_/packages/mine")
    assert binding["binding"] == {"namespace": "guest", "name": "lib"}
    assert [a["name"] for a in binding["actions"]] == ["show"]
    status, body = await hub.call("PUT", "namespaces/_/actions/mine/other", {"exec": {"kind": "python:default", "code": ECHO}})
    assert (status, body["error"]) == (400, "Operation not permitted on package binding.")
    status, body = await hub.call("PUT", "namespaces/_/packages/bb", {"binding": {"namespace": "_", "name": "mine"}})
    assert (status, body["error"]) == (400, "Cannot bind to another package binding.")
    status, body = await hub.call("PUT", "namespaces/_/packages/default", {})
    assert (status, body["error"]) == (400, "Package name 'default' is reserved.")
    status, body = await hub.call("DELETE", "namespaces/_/packages/lib")
    assert (status, body["error"]) == (409, "Package not empty (contains 1 entities). Set force param or delete package contents.")
    status, _ = await hub.call("DELETE", "namespaces/_/packages/lib", force=True)
    assert status == 200
    status, _ = await hub.call("GET", "namespaces/_/actions/lib/show")
    assert status == 404


async def test_other_namespace_is_forbidden_but_public_packages_are_readable(hub):
    alice = await create_subject(hub.hub.engine.store, "alice")
    await put_action(hub, "private", ECHO, "python:default")
    status, body = await hub.call("GET", "namespaces/guest/actions/private", auth=alice.auth_key)
    assert (status, body["error"]) == (403, "The supplied authentication is not authorized to access this resource.")
    status, body = await hub.call("POST", "namespaces/guest/actions/private", auth=alice.auth_key)
    assert status == 403
    status, body = await hub.call("GET", "namespaces/guest/activations", auth=alice.auth_key)
    assert status == 403
    status, echo = await hub.call("POST", "namespaces/whisk.system/actions/utils/echo", {"hi": 1}, blocking=True, result=True,
                                  auth=alice.auth_key)
    assert (status, echo) == (200, {"hi": 1})
    status, packages = await hub.call("GET", "namespaces/whisk.system/packages", auth=alice.auth_key)
    assert status == 200 and "utils" in [p["name"] for p in packages]
    status, members = await hub.call("GET", "namespaces/whisk.system/actions/utils/", auth=alice.auth_key)
    assert status == 200 and sorted(m["name"] for m in members) == ["echo", "sort"]
    status, body = await hub.call("GET", "namespaces/whisk.system/actions", auth=alice.auth_key)
    assert (status, body["error"]) == (403, "The supplied authentication is not authorized to access this resource.")


async def test_activation_queries(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "packages", "p", {})
    await put_action(hub, "p/inner", ECHO, "python:default")
    ids = []
    for name in ("echo", "echo", "p/inner"):
        status, record = await hub.call("POST", f"namespaces/_/actions/{name}", blocking=True)
        assert status == 200
        ids.append(record["activationId"])
    status, listing = await hub.call("GET", "namespaces/_/activations")
    assert [r["activationId"] for r in listing] == list(reversed(ids))
    assert set(listing[0]) == {"namespace", "name", "version", "publish", "annotations", "activationId", "start", "end",
                               "duration", "statusCode"}
    status, echo_only = await hub.call("GET", "namespaces/_/activations", name="echo")
    assert [r["activationId"] for r in echo_only] == [ids[1], ids[0]]
    status, inner = await hub.call("GET", "namespaces/_/activations", name="p/inner", docs=True)
    assert [r["activationId"] for r in inner] == [ids[2]] and "response" in inner[0]
    status, limited = await hub.call("GET", "namespaces/_/activations", limit=1, skip=1)
    assert [r["activationId"] for r in limited] == [ids[1]]
    status, count = await hub.call("GET", "namespaces/_/activations", count=True)
    assert count == {"activations": 3}
    status, body = await hub.call("GET", "namespaces/_/activations", count=True, docs=True)
    assert (status, body["error"]) == (400, "The parameter 'docs' is not permitted with 'count'.")
    status, body = await hub.call("GET", "namespaces/_/activations", limit=201)
    assert (status, body["error"]) == (400, "The value '201' is not in the range of 0 to 200 for activations.")
    status, body = await hub.call("GET", "namespaces/_/activations", since="yesterday")
    assert (status, body["error"]) == (400, "Parameter is not a valid value for epoch seconds: yesterday")
    status, body = await hub.call("GET", "namespaces/_/activations", name="a/b/c")
    assert status == 400
    status, body = await hub.call("GET", "namespaces/_/activations/1234")
    assert status == 400
    status, body = await hub.call("GET", "namespaces/_/activations/" + "0" * 32)
    assert (status, body["error"]) == (404, "The requested resource does not exist.")
