"""Issue 14 through the REST API, in every mode: `retry` and `deadLetter` on rules (validation,
authorisation, keep/remove on update), records of rules without a policy unchanged, the
dead-letter list and redrive errors, outcomes the policy does not retry."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.plugins.hub import HubClient, put_action
from tests.plugins.waiting import RestClient, wait_quiet, wait_records

FAILING = "def main(args):\n    raise Exception('boom %s' % args.get('i'))\n"
NO_MAIN = "def handler(args):\n    return {}\n"


async def _rule(hub: HubClient, name: str, body: dict[str, Any], **query: Any) -> tuple[int, Any]:
    return await hub.call("PUT", f"namespaces/_/rules/{name}", body, **query)


async def _quiet_count(hub: RestClient, name: str, rule: str) -> tuple[int, int]:
    """(records of `name`, letters of `rule`) once unchanged for 4 s (longer than the backoffs
    of the tests that use it)."""
    async def observe() -> tuple[int, int]:
        status, records = await hub.call("GET", "namespaces/_/activations", name=name, count=True)
        status2, letters = await hub.call("GET", f"namespaces/_/rules/{rule}/deadletters", count=True)
        assert status == status2 == 200
        return records["activations"], letters["deadletters"]

    return await wait_quiet(observe, lambda seen: True, quiet_s=4.0, timeout_s=60)


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
    assert (status, body) == (202, {"activationIds": [], "skipped": []})
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


FAILS_UNTIL = """import os
def main(args):
    attempt = int(os.environ["__OW_ATTEMPT"])
    if attempt != args.get("okAt"):
        raise Exception("attempt %d fails" % attempt)
    return {"attempt": attempt}
"""
SLOW_FIX = "import time\ndef main(args):\n    time.sleep(1)\n    return {'fixed': True}\n"


def attempts_of(records: list[Any]) -> list[int]:
    return sorted(int(next(a["value"] for a in r["annotations"] if a["key"] == "attempt")) for r in records)


async def _letters(hub: HubClient, rule: str) -> dict[str, Any]:
    status, letters = await hub.call("GET", f"namespaces/_/rules/{rule}/deadletters")
    assert status == 200
    return {letter["eventId"]: letter for letter in letters}


async def test_a_redrive_runs_under_the_rules_retry_policy(hub: HubClient):
    """The letter leaves the list when an attempt of its redrive succeeds; a redrive that exhausts
    the policy again replaces the letter with its last activation id and reason."""
    await put_action(hub, "flaky", FAILS_UNTIL, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await _rule(hub, "r", {"trigger": "t", "action": "flaky",
                                   "retry": {"maxAttempts": 2, "initialDelayMs": 10}}))[0] == 200
    fired = {}
    for ok_at in (4, 0):  # 4: the redrive's second attempt succeeds; 0: never
        status, body = await hub.call("POST", "namespaces/_/triggers/t", {"okAt": ok_at})
        assert status == 202
        fired[ok_at] = body["activationId"]
    assert await _quiet_count(hub, "flaky", "r") == (4, 2)
    status, body = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {})
    assert status == 202 and len(body["activationIds"]) == 2 and body["skipped"] == []
    assert await _quiet_count(hub, "flaky", "r") == (8, 1), "each redrive retried once; one succeeded"
    [letter] = (await _letters(hub, "r")).values()
    records = await wait_records(hub, "flaky", 8)
    lasts = [r for r in records if r["response"]["status"] == "application error"
             and annotation_of(r, "attempt") == 4]
    [last] = [r for r in lasts if annotation_of(r, "event") == letter["eventId"]]
    assert (letter["attempts"], letter["activationId"], letter["reason"]) == (
        4, last["activationId"], "application error after 2 attempt(s) (retry.maxAttempts is 2) on redrive "
                                 "(attempts 3-4)")
    assert "redrivenBy" not in letter, "the claim ends with the redrive"
    assert attempts_of(records) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [r["response"]["result"] for r in records if r["response"]["status"] == "success"] == [{"attempt": 4}]


def annotation_of(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


async def test_two_redrives_of_one_letter_run_it_once(hub: HubClient):
    await put_action(hub, "failing", FAILING, kind="python:default")
    await put_action(hub, "slow-fix", SLOW_FIX, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    assert (await _rule(hub, "r", {"trigger": "t", "action": "failing", "retry": {"maxAttempts": 1}}))[0] == 200
    assert (await hub.call("POST", "namespaces/_/triggers/t", {"i": 1}))[0] == 202
    assert await _quiet_count(hub, "failing", "r") == (1, 1)
    [letter_id] = [letter["id"] for letter in (await _letters(hub, "r")).values()]
    answers = await asyncio.gather(*[hub.call("POST", "namespaces/_/rules/r/deadletters/redrive",
                                              {"action": "slow-fix"}) for _ in range(2)])
    assert [status for status, _ in answers] == [202, 202]
    bodies = sorted((body for _, body in answers), key=lambda b: len(b["activationIds"]))
    assert bodies[0] == {"activationIds": [], "skipped": [letter_id]}
    [run] = bodies[1]["activationIds"]
    assert bodies[1]["skipped"] == []
    # While it runs, a third ask is skipped too and the letter names its redrive.
    status, third = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {"action": "slow-fix"})
    letters = await _letters(hub, "r")
    if letters:  # not finished yet (it sleeps 1 s)
        assert (status, third) == (202, {"activationIds": [], "skipped": [letter_id]})
        assert [letter["redrivenBy"] for letter in letters.values()] == [run]
    assert await _quiet_count(hub, "slow-fix", "r") == (1, 0), "one run, and the letter left"
    [record] = await wait_records(hub, "slow-fix", 1)
    assert record["activationId"] == run


async def _settled_letters(hub: HubClient, name: str, rule: str) -> tuple[int, list[dict[str, Any]]]:
    """(records of `name`, letters of `rule`) once at least one letter exists, none is being
    redriven, and nothing changed for 4 s."""
    async def observe() -> tuple[int, list[dict[str, Any]]]:
        status, records = await hub.call("GET", "namespaces/_/activations", name=name, count=True)
        assert status == 200
        return records["activations"], list((await _letters(hub, rule)).values())

    return await wait_quiet(observe, lambda seen: bool(seen[1]) and all("redrivenBy" not in l for l in seen[1]),
                            quiet_s=4.0, timeout_s=60)


async def test_disabling_a_rule_cancels_its_waiting_retries_into_dead_letters(hub: HubClient):
    await put_action(hub, "failing", FAILING, kind="python:default")
    assert (await hub.call("PUT", "namespaces/_/triggers/t", {}))[0] == 200
    # Backoffs of 3 to 6 s: the rule is disabled well before (a distributed worker's cache is 1 s).
    assert (await _rule(hub, "r", {"trigger": "t", "action": "failing",
                                   "retry": {"maxAttempts": 3, "initialDelayMs": 6000}}))[0] == 200
    assert (await hub.call("POST", "namespaces/_/triggers/t", {"i": 1}))[0] == 202
    [first] = await wait_records(hub, "failing", 1)
    assert (await hub.call("POST", "namespaces/_/rules/r", {"status": "inactive"}))[0] == 200
    count, [letter] = await _settled_letters(hub, "failing", "r")
    assert count == 1, "the waiting retry ended as a letter, not a run"
    assert (letter["activationId"], letter["attempts"], letter["reason"]) == (
        first["activationId"], 1, "rule guest/r was disabled: attempt 2 was cancelled, not run")

    assert (await hub.call("POST", "namespaces/_/rules/r", {"status": "active"}))[0] == 200
    status, body = await hub.call("POST", "namespaces/_/rules/r/deadletters/redrive", {})
    assert status == 202 and len(body["activationIds"]) == 1
    assert (await hub.call("POST", "namespaces/_/rules/r", {"status": "inactive"}))[0] == 200
    count, [letter] = await _settled_letters(hub, "failing", "r")
    assert count == 2, "the redrive ran, its retry did not"
    assert (letter["activationId"], letter["attempts"], letter["reason"]) == (
        body["activationIds"][0], 2, "rule guest/r was disabled: attempt 3 was cancelled, not run")
