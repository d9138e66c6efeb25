"""Replay and shadow rules through the REST API, embedded and distributed.

Replay: stored events (written into the event log with times spread over a window, as a feed
would have stored them) run again through the rule as it is now, once per (rule, event) unless
forced; counts are exact after quiescence. Shadow: the rule matches and counts, the trigger record
says what it would have run, and its action never runs.
"""

from __future__ import annotations

import collections
import time
import uuid
from datetime import datetime, timezone

from tests.e2e.test_api_actions import put_action
from tests.plugins.waiting import wait_quiet, wait_record
from triggerhub.engine.auth import create_subject
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.store.base import Acceptance

ECHO = "def main(args):\n    return args\n"
MINUTE_MS = 60_000
QUIET_S = 1.5


async def put(hub, collection, name, body, **query):
    status, response = await hub.call("PUT", f"namespaces/_/{collection}/{name}", body, **query)
    assert status == 200, response
    return response


async def store_events(hub, trigger: str, items: list[tuple[int, dict]]) -> list[str]:
    """Write events of `/guest/<trigger>` into the event log (time_ms, data), as accepted before."""
    ids = []
    for time_ms, data in items:
        event = TriggerEvent(f"ev-{uuid.uuid4().hex}", "test/replay", "test.reading", FullyQualifiedName("guest", trigger),
                             data, time_ms=time_ms)
        assert await hub.hub.engine.store.accept(Acceptance(event=event))
        ids.append(event.id)
    return ids


async def records_of(hub, action: str) -> list[dict]:
    status, records = await hub.call("GET", "namespaces/_/activations", name=action, docs=True, limit=200)
    assert status == 200, records
    return records


async def quiet_records(hub, action: str, expected: int) -> list[dict]:
    """The action's records once there are `expected` and no new one came for QUIET_S."""
    records = await wait_quiet(lambda: records_of(hub, action), lambda seen: len(seen) >= expected,
                               quiet_s=QUIET_S, timeout_s=60)
    return records


def annotation(record: dict, key: str):
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


def iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


async def replay(hub, rule: str, body: dict, *, expected_status: int = 200, **query):
    status, answer = await hub.call("POST", f"namespaces/_/rules/{rule}/replay", body, **query)
    assert status == expected_status, answer
    return answer


async def test_a_ten_minute_window_replayed_twice_runs_each_event_once_and_forced_twice(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "meter", {"parameters": [{"key": "site", "value": "lab"}]})
    await put(hub, "rules", "log", {"trigger": "meter", "action": "echo"})
    start_ms = int(time.time() * 1000) - 30 * MINUTE_MS
    inside = await store_events(hub, "meter", [(start_ms + i * 30_000, {"n": i}) for i in range(20)])
    await store_events(hub, "meter", [(start_ms - 1, {"n": "before"}), (start_ms + 10 * MINUTE_MS + 1, {"n": "after"})])
    window = {"from": iso(start_ms), "to": iso(start_ms + 10 * MINUTE_MS)}

    first = await replay(hub, "log", window)
    assert {k: v for k, v in first.items() if k != "activationIds"} == {
        "rule": "guest/log", "force": False, "events": 20, "matched": 20, "run": 20, "skipped": 0, "filtered": 0,
        "failed": 0}
    assert len(set(first["activationIds"])) == 20
    records = await quiet_records(hub, "echo", 20)
    assert sorted(annotation(r, "event") for r in records) == sorted(inside)
    assert {r["activationId"] for r in records} == set(first["activationIds"])
    record = next(r for r in records if annotation(r, "event") == inside[3])
    assert (record["response"]["result"], annotation(record, "rule"), annotation(record, "replay")) == (
        {"site": "lab", "n": 3}, "guest/log", True)

    again = await replay(hub, "log", {"from": start_ms, "to": start_ms + 10 * MINUTE_MS})  # epoch ms this time
    assert (again["events"], again["run"], again["skipped"], again["activationIds"]) == (20, 0, 20, [])
    assert len(await quiet_records(hub, "echo", 20)) == 20

    forced = await replay(hub, "log", {**window, "force": True})
    assert (forced["force"], forced["events"], forced["run"], forced["skipped"]) == (True, 20, 20, 0)
    records = await quiet_records(hub, "echo", 40)
    assert collections.Counter(annotation(r, "event") for r in records) == {event_id: 2 for event_id in inside}


async def test_replay_by_ids_runs_the_rules_current_filter_and_transform(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "readings", {})
    await put(hub, "rules", "hot", {"trigger": "readings", "action": "echo",
                                    "filter": {"data": {"temp": [{"numeric": [">", 30]}]}},
                                    "transform": {"celsius": "$.data.temp"}})
    now_ms = int(time.time() * 1000)
    cool, warm, hot = await store_events(hub, "readings", [(now_ms - 3000, {"temp": 10}), (now_ms - 2000, {"temp": 35}),
                                                           (now_ms - 1000, {"temp": 50})])
    answer = await replay(hub, "hot", {"ids": [cool, warm]})
    assert {k: answer[k] for k in ("events", "matched", "run", "filtered", "skipped")} == {
        "events": 2, "matched": 1, "run": 1, "filtered": 1, "skipped": 0}
    [record] = await quiet_records(hub, "echo", 1)
    assert (record["response"]["result"], annotation(record, "event")) == ({"celsius": 35}, warm)

    await put(hub, "rules", "hot", {"filter": {"data": {"temp": [{"numeric": [">", 5]}]}},
                                    "transform": {"c": "$.data.temp", "from": "{$.source}"}}, overwrite=True)
    answer = await replay(hub, "hot", {"ids": [hot, warm, cool, hot]})
    assert {k: answer[k] for k in ("events", "matched", "run", "filtered", "skipped")} == {
        "events": 3, "matched": 3, "run": 2, "filtered": 0, "skipped": 1}
    records = await quiet_records(hub, "echo", 3)
    results = {annotation(r, "event"): r["response"]["result"] for r in records if r["activationId"] in answer["activationIds"]}
    assert results == {cool: {"c": 10, "from": "test/replay"}, hot: {"c": 50, "from": "test/replay"}}
    assert len(records) == 3


async def test_bad_replays_are_400_naming_the_value_and_run_nothing(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "t", {})
    await put(hub, "triggers", "other", {})
    await put(hub, "rules", "r", {"trigger": "t", "action": "echo"})
    [foreign] = await store_events(hub, "other", [(int(time.time() * 1000), {"x": 1})])
    cases = [
        ({"from": "2026-12-05T09:00:00Z", "to": "2026-12-05T08:00:00Z"},
         "replay: \"from\" '2026-12-05T09:00:00Z' is after \"to\" '2026-12-05T08:00:00Z'; give a window with from <= to"),
        ({"from": "yesterday", "to": 5},
         "replay \"from\": 'yesterday' is not a time; give an ISO-8601 time with a zone (2026-12-05T08:00:00Z) "
         "or epoch milliseconds (1764921600000), from 1970 to 9999"),
        ({"from": 0, "to": "2026-12-05T08:00:00"},
         "replay \"to\": '2026-12-05T08:00:00' has no time zone; add Z or an offset like +01:00"),
        ({"from": 1.5, "to": 2}, "replay \"from\": 1.5 is not a time; give an ISO-8601 time with a zone "
                                 "(2026-12-05T08:00:00Z) or epoch milliseconds (1764921600000), from 1970 to 9999"),
        ({"ids": ["nope-1", foreign, "nope-2"]},
         "replay: no stored event 'nope-1', 'nope-2' in namespace guest; use ids of stored events of the rule's "
         "trigger (they may have been pruned)"),
        ({"ids": [foreign]}, f"replay: event '{foreign}' is not an event of trigger /guest/t, the rule's trigger; "
                             "replay it through a rule of its own trigger"),
        ({"ids": []}, "replay \"ids\": [] is not a non-empty array of event ids (strings)"),
        ({"ids": ["a"], "force": "yes"}, "replay \"force\": 'yes' is not a boolean; send true or false"),
        ({"from": 0}, 'replay: the time window has no "to"; ' + USAGE),
        ({"ids": ["a"], "from": 0, "to": 1}, "replay: give either a time window or ids, not both; " + USAGE),
        ({}, "replay: give either a time window or ids, not neither; " + USAGE),
        ({"since": 0}, "replay: unknown keys since; " + USAGE),
    ]
    for body, message in cases:
        answer = await replay(hub, "r", body, expected_status=400)
        assert answer["error"] == message, body
    assert await records_of(hub, "echo") == []


USAGE = ('replay needs {"from": T, "to": T} or {"ids": ["<event id>", ...]}, and optionally "force": true; '
         "T is epoch milliseconds (1764921600000) or an ISO-8601 time with a zone (2026-12-05T08:00:00Z)")


async def test_replay_is_authorised_for_the_rule_and_refused_for_shadow_rules(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "t", {})
    await put(hub, "rules", "r", {"trigger": "t", "action": "echo"})
    await put(hub, "rules", "quiet", {"trigger": "t", "action": "echo", "shadow": True})
    [event_id] = await store_events(hub, "t", [(int(time.time() * 1000), {"x": 1})])
    mallory = await create_subject(hub.hub.engine.store, "mallory")
    status, answer = await hub.call("POST", "namespaces/guest/rules/r/replay", {"ids": [event_id]}, auth=mallory.auth_key)
    assert (status, answer["error"]) == (403, "The supplied authentication is not authorized to access this resource.")
    answer = await replay(hub, "quiet", {"ids": [event_id]}, expected_status=400)
    assert answer["error"] == ("rule guest/quiet is a shadow rule and runs nothing, so a replay would run nothing; "
                               "see what it would do with explain and an eventId, or set shadow to false first")
    assert await records_of(hub, "echo") == []


async def test_a_shadow_rule_matches_counts_and_records_what_it_would_run_and_runs_nothing(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "readings", {"parameters": [{"key": "site", "value": "lab"}]})
    rule = await put(hub, "rules", "hot", {"trigger": "readings", "action": "echo", "shadow": True,
                                           "filter": {"data": {"temp": [{"numeric": [">", 30]}]}},
                                           "transform": {"celsius": "$.data.temp"}})
    assert rule["shadow"] is True
    fired = []
    for temp in (10, 35, 50):
        status, body = await hub.call("POST", "namespaces/_/triggers/readings", {"temp": temp})
        assert status == 202, body
        fired.append(body["activationId"])
    triggers = [await wait_record(hub, activation_id) for activation_id in fired[1:]]  # none for the filtered one
    assert [t["logs"] for t in triggers] == [
        ['{"rule":"guest/hot","action":"guest/echo","statusCode":0,"success":true,"shadow":true,'
         f'"params":{{"site":"lab","celsius":{temp}}}}}'] for temp in (35, 50)]
    assert await quiet_records(hub, "echo", 0) == []
    status, read = await hub.call("GET", "namespaces/_/rules/hot")
    assert (status, read["counts"], read["shadow"]) == (200, {"matched": 2, "filtered": 1}, True)
    status, explained = await hub.call("POST", "namespaces/_/rules/hot/explain", {"eventId": fired[1]})
    [outcome] = explained["rules"]
    assert (outcome["outcome"], outcome["wouldRun"], outcome["shadow"]) == ("shadowed", {"site": "lab", "celsius": 35}, True)
    status, inline = await hub.call("POST", "namespaces/_/rules/hot/explain", {"data": {"temp": 31}})
    assert (status, inline["matched"], inline["params"], inline["shadow"]) == (200, True, {"site": "lab", "celsius": 31}, True)

    read = await put(hub, "rules", "hot", {"shadow": False}, overwrite=True)
    assert "shadow" not in read
    status, body = await hub.call("POST", "namespaces/_/triggers/readings", {"temp": 40})
    [record] = await quiet_records(hub, "echo", 1)
    assert (record["response"]["result"], annotation(record, "event")) == ({"site": "lab", "celsius": 40}, body["activationId"])


FIRST_FAILS = """import os
def main(args):
    if os.environ["__OW_ATTEMPT"] == "1":
        raise Exception("the first attempt fails")
    return {"n": args["n"], "attempt": int(os.environ["__OW_ATTEMPT"]), "delivery": os.environ["__OW_DELIVERY_KEY"]}
"""


async def test_a_replayed_run_is_retried_traced_and_raises_no_derived_event(hub):
    """A replayed run is a delivery: the rule's retry policy applies, its records carry the live
    runs' lineage annotations and show in the event's lineage. A replay through one rule does not
    feed the trigger's derived triggers (the event is not accepted on its trigger again)."""
    await put_action(hub, "flaky", FIRST_FAILS, "python:default")
    await put_action(hub, "echo", ECHO, "python:default")
    await put(hub, "triggers", "meter", {})
    await put(hub, "triggers", "silent", {"derive": {"kind": "absence", "from": "meter", "key": "$.data.n", "forS": 1}})
    await put(hub, "rules", "on-silent", {"trigger": "silent", "action": "echo"})
    await put(hub, "rules", "log", {"trigger": "meter", "action": "flaky",
                                    "retry": {"maxAttempts": 2, "initialDelayMs": 10}})
    now_ms = int(time.time() * 1000)
    ids = await store_events(hub, "meter", [(now_ms - 2000 + i, {"n": i}) for i in range(3)])

    answer = await replay(hub, "log", {"ids": ids})
    assert (answer["run"], answer["failed"]) == (3, 0)
    # QUIET_S (1.5 s) > forS (1 s): an absence armed by a replayed event would show meanwhile.
    records = await quiet_records(hub, "flaky", 6)
    assert len(records) == 6
    by_event = collections.defaultdict(list)
    for record in records:
        by_event[annotation(record, "event")].append(record)
    assert sorted(by_event) == sorted(ids)
    for event_id, runs in by_event.items():
        runs.sort(key=lambda r: annotation(r, "attempt"))
        first, second = runs
        assert [annotation(r, "attempt") for r in runs] == [1, 2]
        assert first["activationId"] in answer["activationIds"] and first["response"]["status"] == "application error"
        assert second["response"]["result"]["attempt"] == 2
        assert {annotation(r, "rule") for r in runs} == {"guest/log"} and all(annotation(r, "replay") for r in runs)
        assert all(annotation(r, "traceparent") for r in runs)
        status, chain = await hub.call("GET", f"namespaces/_/events/{event_id}/lineage")
        assert status == 200, chain
        shown = {a["activationId"]: a for a in chain["activations"]}
        assert {r["activationId"] for r in runs} <= set(shown)
        assert {shown[r["activationId"]]["role"] for r in runs} == {"replay"}
        assert {a["traceparent"].split("-")[1] for a in chain["activations"] if a["activationId"] in shown} == {
            chain["traceId"]}
    assert await records_of(hub, "echo") == [], "no absence derived from replayed events"
    assert await hub.hub.engine.store.count_events("/guest/silent") == 0
