"""Issue 14 through the REST API, in every mode: `retry` and `deadLetter` on rules (validation,
authorisation, keep/remove on update), records of rules without a policy unchanged, the
dead-letter list and redrive errors, outcomes the policy does not retry."""

from __future__ import annotations

from typing import Any

from tests.plugins.hub import HubClient, put_action
from tests.plugins.waiting import RestClient, wait_quiet, wait_records

FAILING = "def main(args):\n    raise Exception('boom %s' % args.get('i'))\n"
NO_MAIN = "def handler(args):\n    return {}\n"


async def _rule(hub: HubClient, name: str, body: dict[str, Any], **query: Any) -> tuple[int, Any]:
    return await hub.call("PUT", f"namespaces/_/rules/{name}", body, **query)


async def _quiet_count(hub: RestClient, name: str, rule: str) -> tuple[int, int]:
    async def observe() -> tuple[int, int]:
        status, records = await hub.call("GET", "namespaces/_/activations", name=name, count=True)
        status2, letters = await hub.call("GET", f"namespaces/_/rules/{rule}/deadletters", count=True)
        assert status == status2 == 200
        return records["activations"], letters["deadletters"]

    return await wait_quiet(observe, lambda seen: True, quiet_s=2.0, timeout_s=60)


async def test_retry_and_dead_letter_are_validated_and_kept_on_the_rule(hub: HubClient):
    await put_action(hub, "failing", FAILING, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/triggers/alerts", {}))[0] == 200
    for retry, message in [
        ({"maxAttempts": 0}, "retry.maxAttempts is 0; give a whole number from 1 to 100"),
        ({"on": ["crash"]}, "retry.on: unknown outcome 'crash'; allowed: 'application error', 'developer error', "
                            "'internal error', 'timeout'"),
        ("3", "retry must be an object like {\"maxAttempts\": 3, \"initialDelayMs\": 200}; got '3'"),
    ]:
        status, body = await _rule(hub, "r", {"trigger": "t", "action": "failing", "retry": retry})
        assert (status, body["error"]) == (400, message)
    status, body = await _rule(hub, "r", {"trigger": "t", "action": "failing", "deadLetter": "/guest/alerts"})
    assert (status, body["error"]) == (400, "deadLetter must be an object {\"trigger\": \"/namespace/name\"}; "
                                            "got '/guest/alerts'")
    status, body = await _rule(hub, "r", {"trigger": "t", "action": "failing", "deadLetter": {"trigger": "/other/x"}})
    assert (status, body["error"]) == (403, "The supplied authentication is not authorized to access 'other/x'.")
    assert (await hub.call("GET", "namespaces/_/rules/r"))[0] == 404, "a refused rule writes nothing"

    policy = {"maxAttempts": 4, "initialDelayMs": 10, "on": ["timeout"]}
    status, body = await _rule(hub, "r", {"trigger": "t", "action": "failing", "retry": policy,
                                          "deadLetter": {"trigger": "alerts"}})
    assert status == 200, body
    assert (body["retry"], body["deadLetter"]) == (policy, {"trigger": "alerts"})
    status, body = await _rule(hub, "r", {"trigger": "t", "action": "failing"}, overwrite=True)
    assert (status, body["retry"], body["deadLetter"]) == (200, policy, {"trigger": "alerts"}), "left out: kept"
    status, body = await _rule(hub, "r", {"retry": None, "deadLetter": None}, overwrite=True)
    assert status == 200 and "retry" not in body and "deadLetter" not in body, "null removes them"
    status, got = await hub.call("GET", "namespaces/_/rules/r")
    assert status == 200 and "retry" not in got and "deadLetter" not in got


async def test_a_rule_without_a_policy_keeps_openwhisk_records(hub: HubClient):
    await put_action(hub, "failing", FAILING, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await _rule(hub, "plain", {"trigger": "t", "action": "failing"}))[0] == 200
    status, fired = await hub.call("POST", "namespaces/_/triggers/t", {"i": 1})
    assert status == 202
    [record] = await wait_records(hub, "failing", 1)
    assert record["response"]["status"] == "application error"
    keys = {a["key"] for a in record["annotations"]}
    # No attempt annotation without a policy; rule, event and traceparent are lineage's (TRIGGERHUB_LINEAGE).
    assert {"path", "kind", "limits", "timeout", "waitTime"} <= keys and "attempt" not in keys
    assert await _quiet_count(hub, "failing", "plain") == (1, 0), "no retry and no dead letter without a policy"


async def test_outcomes_outside_retry_on_go_straight_to_the_dead_letters(hub: HubClient):
    await put_action(hub, "broken", NO_MAIN, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await _rule(hub, "r", {"trigger": "t", "action": "broken", "retry": {"initialDelayMs": 10}}))[0] == 200
    assert (await hub.call("POST", "namespaces/_/triggers/t", {"i": 1}))[0] == 202
    assert await _quiet_count(hub, "broken", "r") == (1, 1)
    [record] = await wait_records(hub, "broken", 1)
    assert record["response"]["status"] == "action developer error"
    status, [letter] = await hub.call("GET", "namespaces/_/rules/r/deadletters")
    assert status == 200
    assert letter["reason"] == "developer error (retry.on does not include it) after 1 attempt(s)"
    assert (letter["rule"], letter["activationId"], letter["attempts"]) == ("guest/r", record["activationId"], 1)


async def test_dead_letter_routes_refuse_what_they_cannot_do(hub: HubClient):
    status, body = await hub.call("GET", "namespaces/_/rules/nope/deadletters")
    assert (status, body["error"]) == (404, "The requested resource does not exist.")
    status, body = await hub.call("POST", "namespaces/_/rules/nope/deadletters/redrive", {})
    assert (status, body["error"]) == (404, "The requested resource does not exist.")
    await put_action(hub, "failing", FAILING, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await _rule(hub, "r", {"trigger": "t", "action": "failing", "retry": {"maxAttempts": 1}}))[0] == 200
    status, body = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {"ids": "all"})
    assert (status, body["error"]) == (400, "redrive: ids must be an array of 1 to 10000 dead-letter ids (strings); "
                                            "list them with GET .../rules/r/deadletters")
    status, body = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {"target": "x"})
    assert (status, body["error"]) == (400, "redrive: unknown key 'target'; allowed: 'ids', 'action'")
    status, body = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {"ids": ["f" * 32]})
    assert (status, body["error"]) == (404, f"rule r has no dead letter {'f' * 32}; list them with "
                                            "GET .../rules/r/deadletters")
    status, body = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {})
    assert (status, body) == (202, {"activationIds": []})
    status, body = await hub.call("GET", "namespaces/_/rules/r/deadletters", limit=201)
    assert (status, body["error"]) == (400, "The value '201' is not in the range of 0 to 200 for deadletters.")


ECHO = "def main(args):\n    return args\n"


async def test_redrive_runs_the_stored_event_through_the_rule_as_it_is_now(hub: HubClient):
    await put_action(hub, "failing", FAILING, kind="python:default")
    await put_action(hub, "echo", ECHO, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {"parameters": [{"key": "site", "value": "a"}]}))[0] == 200
    assert (await _rule(hub, "r", {"trigger": "t", "action": "failing", "transform": {"old": "$.data.i"},
                                   "retry": {"maxAttempts": 1}}))[0] == 200
    assert (await hub.call("POST", "namespaces/_/triggers/t", {"i": 7}))[0] == 202
    assert await _quiet_count(hub, "failing", "r") == (1, 1)
    assert (await _rule(hub, "r", {"transform": {"new": "$.data.i"}}, overwrite=True))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {"parameters": [{"key": "site", "value": "b"}]},
                           overwrite=True))[0] == 200
    status, body = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {"action": "echo"})
    assert status == 202 and len(body["activationIds"]) == 1
    [record] = await wait_records(hub, "echo", 1)
    assert record["activationId"] == body["activationIds"][0]
    assert record["response"]["result"] == {"site": "b", "new": 7}
    assert await _quiet_count(hub, "echo", "r") == (1, 0), "the letter left the list when its redrive succeeded"


async def test_a_deleted_rule_takes_its_dead_letters_with_it(hub: HubClient):
    await put_action(hub, "failing", FAILING, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await _rule(hub, "r", {"trigger": "t", "action": "failing", "retry": {"maxAttempts": 1}}))[0] == 200
    assert (await hub.call("POST", "namespaces/_/triggers/t", {"i": 1}))[0] == 202
    assert await _quiet_count(hub, "failing", "r") == (1, 1)
    assert (await hub.call("DELETE", "namespaces/_/rules/r"))[0] == 200
    assert (await _rule(hub, "r", {"trigger": "t", "action": "failing"}))[0] == 200
    assert await hub.call("GET", "namespaces/_/rules/r/deadletters") == (200, [])
