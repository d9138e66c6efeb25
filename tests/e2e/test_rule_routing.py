"""Rules with `filter` and `transform` through the REST API: validation on save, firing only what
matches with the transformed parameters, and explain. Rules without them stay OpenWhisk's."""

from __future__ import annotations

from tests.e2e.test_api_actions import put_action, wait_record
from tests.plugins.waiting import wait_quiet
from triggerhub.engine.auth import create_subject

ECHO = "def main(args):\n    return args\n"
HOT = {"data": {"temp": [{"numeric": [">", 30]}]}}
SHAPE = {"celsius": "$.data.temp", "where": "{$.data.room} ({$.source})"}
OPENWHISK_RULE_KEYS = {"namespace", "name", "version", "publish", "status", "trigger", "action", "annotations", "updated"}


async def put(hub, collection, name, body, **query):
    status, response = await hub.call("PUT", f"namespaces/_/{collection}/{name}", body, **query)
    assert status == 200, response
    return response


async def activation_count(hub) -> int:
    status, body = await hub.call("GET", "namespaces/_/activations", count=True)
    assert status == 200, body
    return body["activations"]


async def quiet_count(hub, expected: int, quiet_s: float = 1.0) -> int:
    """The activation count once it reached `expected` and then did not change for `quiet_s`."""
    return await wait_quiet(lambda: activation_count(hub), lambda count: count >= expected, quiet_s=quiet_s,
                            timeout_s=30)


async def test_bad_patterns_are_400_naming_the_path_and_nothing_is_saved(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "readings", {})
    status, body = await hub.call("PUT", "namespaces/_/rules/hot", {
        "trigger": "readings", "action": "echo", "filter": {"data": {"temp": [{"numeric": ["gt", 30]}]}}})
    assert (status, body["error"]) == (400, "filter $.data.temp[0].numeric[0]: expected an operator "
                                            "('<', '<=', '=', '>=', '>') followed by a number, got 'gt'")
    status, body = await hub.call("PUT", "namespaces/_/rules/hot", {
        "trigger": "readings", "action": "echo", "filter": {"data": {"temp": 30}}})
    assert status == 400 and body["error"].startswith("filter $.data.temp: ")
    status, body = await hub.call("PUT", "namespaces/_/rules/hot", {"trigger": "readings", "action": "echo", "transform": [1]})
    assert status == 400 and body["error"].startswith("transform $: ")
    status, _ = await hub.call("GET", "namespaces/_/rules/hot")
    assert status == 404
    status, trigger = await hub.call("GET", "namespaces/_/triggers/readings")
    assert "rules" not in trigger


async def test_a_plain_rule_answers_exactly_as_openwhisk(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "t", {})
    created = await put(hub, "rules", "plain", {"trigger": "t", "action": "echo"})
    status, read = await hub.call("GET", "namespaces/_/rules/plain")
    assert status == 200 and set(created) == set(read) == OPENWHISK_RULE_KEYS
    status, fired = await hub.call("POST", "namespaces/_/triggers/t", {"temp": 1})
    record = await wait_record(hub, fired["activationId"])
    [outcome] = record["logs"]
    echo = await wait_record(hub, outcome.split('"activationId":"')[1][:32])
    assert echo["response"]["result"] == {"temp": 1}
    assert {"rule", "event"}.isdisjoint(a["key"] for a in echo["annotations"])  # provenance only on routed rules


async def test_only_matching_events_run_with_transformed_parameters_and_explain_says_why(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "readings", {"parameters": [{"key": "site", "value": "lab"}, {"key": "celsius", "value": -1}]})
    rule = await put(hub, "rules", "hot", {"trigger": "readings", "action": "echo", "filter": HOT, "transform": SHAPE})
    assert (rule["filter"], rule["transform"], rule["status"]) == (HOT, SHAPE, "active")

    status, cold = await hub.call("POST", "namespaces/_/triggers/readings", {"temp": 21.5, "room": "hall"})
    assert status == 202
    status, hot = await hub.call("POST", "namespaces/_/triggers/readings", {"temp": 31.5, "room": "kitchen"})
    assert status == 202
    trigger_record = await wait_record(hub, hot["activationId"])
    [outcome] = trigger_record["logs"]
    action_id = outcome.split('"activationId":"')[1][:32]
    echo = await wait_record(hub, action_id)
    source = "/api/v1/namespaces/guest/triggers/readings"
    assert echo["response"]["result"] == {"site": "lab", "celsius": 31.5, "where": f"kitchen ({source})"}
    annotations = {a["key"]: a["value"] for a in echo["annotations"]}
    assert (annotations["rule"], annotations["event"]) == ("guest/hot", hot["activationId"])
    assert await quiet_count(hub, 2) == 2  # the hot trigger record and its action: the cold event made none
    status, _ = await hub.call("GET", f"namespaces/_/activations/{cold['activationId']}")
    assert status == 404

    status, read = await hub.call("GET", "namespaces/_/rules/hot")
    assert (read["filter"], read["transform"]) == (HOT, SHAPE)
    assert read["counts"] == {"matched": 1, "filtered": 1}  # stored with each event: the same in both modes

    status, trace = await hub.call("POST", "namespaces/_/rules/hot/explain", {"data": {"temp": 12, "room": "attic"}})
    assert status == 200
    assert trace == {"matched": False, "clauses": [{"path": "$.data.temp", "value": 12, "present": True,
                                                    "matched": False, "test": [{"numeric": [">", 30]}]}],
                     "params": {"site": "lab", "celsius": 12, "where": "attic (explain)"}}

    await put(hub, "rules", "everything", {"trigger": "readings", "action": "echo"})
    await put(hub, "rules", "idle", {"trigger": "readings", "action": "echo"})
    status, _ = await hub.call("POST", "namespaces/_/rules/idle", {"status": "inactive"})
    assert status == 200
    status, trace = await hub.call("POST", "namespaces/_/rules/hot/explain", {"eventId": cold["activationId"]})
    assert status == 200, trace
    assert (trace["matched"], trace["clauses"][0]["value"], trace["event"]["data"]) == (False, 21.5, {"temp": 21.5, "room": "hall"})
    outcomes = {r["rule"]: (r["status"], r["matched"], r["outcome"]) for r in trace["rules"]}
    assert outcomes == {"guest/hot": ("active", False, "filtered"), "guest/everything": ("active", True, "not run"),
                        "guest/idle": ("inactive", True, "inactive")}
    status, trace = await hub.call("POST", "namespaces/_/rules/hot/explain", {"eventId": hot["activationId"]})
    assert [(r["rule"], r["outcome"], r.get("activationId")) for r in trace["rules"]][0] == ("guest/hot", "activated", action_id)

    alice = await create_subject(hub.hub.engine.store, "alice")
    status, body = await hub.call("POST", "namespaces/guest/rules/hot/explain", {"eventId": cold["activationId"]},
                                  auth=alice.auth_key)
    assert (status, body["error"]) == (403, "The supplied authentication is not authorized to access this resource.")
    status, body = await hub.call("POST", "namespaces/_/rules/hot/explain", {"temp": 1})
    assert (status, body["error"]) == (400, "the explain body has no 'data' key; explain needs a JSON object: "
                                            '{"eventId": "<stored event id>"} or an event {"data": {...}, "source"?, '
                                            '"type"?, "subject"?, "id"?, "time"?}')
    status, body = await hub.call("POST", "namespaces/_/rules/hot/explain", {"eventId": "nope"})
    assert (status, body["error"]) == (404, "event 'nope' is not stored in namespace guest; use the id of an event "
                                            "fired on one of your triggers")

    updated = await put(hub, "rules", "hot", {"trigger": "readings", "action": "echo", "filter": None}, overwrite=True)
    assert "filter" not in updated and updated["transform"] == SHAPE


async def test_explain_says_when_the_events_trigger_had_no_rules_or_is_gone(hub):
    from triggerhub.model import FullyQualifiedName, TriggerEvent, new_activation_id, now_ms

    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "readings", {})
    await put(hub, "triggers", "spare", {})
    await put(hub, "rules", "hot", {"trigger": "readings", "action": "echo", "filter": HOT})
    event = TriggerEvent(new_activation_id(), "/test/feed", "test.reading", FullyQualifiedName("guest", "spare"),
                         {"temp": 40}, time_ms=now_ms())
    assert await hub.hub.engine.emit(event)  # a feed's event on a trigger without rules: stored, nothing runs
    status, trace = await hub.call("POST", "namespaces/_/rules/hot/explain", {"eventId": event.id})
    assert status == 200, trace
    assert (trace["matched"], trace["rules"], trace["reason"]) == (True, [], "trigger /guest/spare has no rules")
    assert (await hub.call("DELETE", "namespaces/_/triggers/spare"))[0] == 200
    status, trace = await hub.call("POST", "namespaces/_/rules/hot/explain", {"eventId": event.id})
    assert (trace["rules"], trace["reason"]) == ([], "trigger /guest/spare no longer exists")
