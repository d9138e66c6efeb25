"""The retry, dead-letter and redrive scenarios of issue 14, for any mode: the test gives the REST
client, a way to count the store's pending and waiting-retry rows, and what to kill mid-way.

Counts are read after quiescence: no pending invocation, no waiting retry, and no record count
changing for QUIET_S (`settle`), never after a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.plugins.waiting import RestClient, wait_quiet

FLAKY = """import os
def main(args):
    attempt = int(os.environ["__OW_ATTEMPT"])
    if attempt < 3:
        raise Exception("attempt %d of event %s fails" % (attempt, os.environ["__OW_EVENT_ID"]))
    return {"i": args["i"], "key": os.environ["__OW_IDEMPOTENCY_KEY"], "delivery": os.environ["__OW_DELIVERY_KEY"]}
"""
FAILING = "def main(args):\n    raise Exception('always fails')\n"
FIXED = "def main(args):\n    return {'i': args['i'], 'fixed': True}\n"
NOTED = "def main(args):\n    return {'eventId': args['eventId'], 'reason': args['reason']}\n"
RELAXED_LIMITS = {"TRIGGERHUB_INVOCATIONS_PER_MINUTE": "1000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "1000000",
                  "TRIGGERHUB_FIRES_PER_MINUTE": "1000000"}
QUIET_S = 3.0
SETTLE_TIMEOUT_S = 240.0
FIRE_CONCURRENCY = 16

Rows = Callable[[], Awaitable[tuple[int, int]]]
"""(pending invocations, waiting retries) in the hub's store."""
Kill = Callable[[], Awaitable[None]]
"""kill -9 of a process of the hub and start it again; returns once it serves again."""


@dataclass(frozen=True, slots=True)
class Quiet:
    records: dict[str, int]  # per action name
    pending: int
    retries: int


async def count_records(client: RestClient, name: str) -> int:
    status, body = await client.call("GET", "namespaces/_/activations", name=name, count="true")
    assert status == 200, body
    return int(body["activations"])


async def settle(client: RestClient, rows: Rows, *names: str) -> Quiet:
    seen: list[Quiet] = []

    async def observe() -> Quiet:
        pending, retries = await rows()
        seen.append(Quiet({name: await count_records(client, name) for name in names}, pending, retries))
        return seen[-1]

    try:
        return await wait_quiet(observe, lambda quiet: quiet.pending == 0 and quiet.retries == 0, quiet_s=QUIET_S,
                                timeout_s=SETTLE_TIMEOUT_S, interval_s=0.5)
    except TimeoutError:
        raise AssertionError(f"not quiet within {SETTLE_TIMEOUT_S} s; last seen {seen[-1:]}") from None


async def records(client: RestClient, name: str) -> list[dict[str, Any]]:
    """Every record of action `name`, with docs, page by page."""
    out: list[dict[str, Any]] = []
    while True:
        status, page = await client.call("GET", "namespaces/_/activations", name=name, docs="true", limit=200,
                                         skip=len(out))
        assert status == 200, page
        out.extend(page)
        if len(page) < 200:
            return out


def annotations(record: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in record["annotations"]}


async def put(client: RestClient, path: str, body: dict[str, Any]) -> Any:
    status, answer = await client.call("PUT", f"namespaces/_/{path}", body, overwrite="true")
    assert status == 200, answer
    return answer


async def put_action(client: RestClient, name: str, code: str) -> None:
    await put(client, f"actions/{name}", {"exec": {"kind": "python:default", "code": code}})


async def fire_all(client: RestClient, trigger: str, count: int) -> None:
    gate = asyncio.Semaphore(FIRE_CONCURRENCY)

    async def fire(i: int) -> None:
        async with gate:
            status, body = await client.call("POST", f"namespaces/_/triggers/{trigger}", {"i": i})
            assert status == 202, body

    async with asyncio.TaskGroup() as tasks:
        for i in range(count):
            tasks.create_task(fire(i))


async def kill_when(client: RestClient, name: str, at_least: int, kill: Kill) -> None:
    """Kill once action `name` has `at_least` records (and fewer than all): retries are then
    waiting in the store, and a kill that came too late would fail the test's own check."""
    async with asyncio.timeout(SETTLE_TIMEOUT_S):
        while await count_records(client, name) < at_least:
            await asyncio.sleep(0.05)
    await kill()


async def dead_letter_count(client: RestClient, rule: str) -> int:
    status, body = await client.call("GET", f"namespaces/_/rules/{rule}/deadletters", count="true")
    assert status == 200, body
    return int(body["deadletters"])


# ---------------------------------------------------------------------------- the scenarios


async def flaky_events(client: RestClient, rows: Rows, *, events: int, kill: Kill | None) -> None:
    """`events` events to an action failing its first two attempts: 3 records per event (attempts
    1, 2, 3 annotated), `events` successes, no dead letter."""
    await put_action(client, "flaky", FLAKY)
    await put(client, "triggers/readings", {})
    await put(client, "rules/retried", {"trigger": "readings", "action": "flaky",
                                        "retry": {"maxAttempts": 3, "initialDelayMs": 10, "maxDelayMs": 100}})
    await fire_all(client, "readings", events)
    if kill is not None:
        await kill_when(client, "flaky", events, kill)
    quiet = await settle(client, rows, "flaky")
    assert quiet == Quiet({"flaky": 3 * events}, 0, 0)
    found = await records(client, "flaky")
    assert len(found) == 3 * events and len({r["activationId"] for r in found}) == 3 * events
    attempts: dict[str, list[int]] = {}
    for record in found:
        notes = annotations(record)
        assert notes["rule"] == "guest/retried"
        attempts.setdefault(notes["event"], []).append(notes["attempt"])
        if notes["attempt"] < 3:
            assert record["response"]["status"] == "application error"
            assert record["response"]["result"] == {
                "error": f"attempt {notes['attempt']} of event {notes['event']} fails"}
        else:
            assert record["response"]["status"] == "success"
            result = record["response"]["result"]
            assert result["key"] == f"{result['delivery']}-3"
    assert len(attempts) == events
    assert all(sorted(seen) == [1, 2, 3] for seen in attempts.values())
    successes = [r["response"]["result"]["i"] for r in found if r["response"]["status"] == "success"]
    assert sorted(successes) == list(range(events))
    assert await dead_letter_count(client, "retried") == 0


async def dead_letters_then_redrive(client: RestClient, rows: Rows, *, events: int,
                                    kill: Kill | None) -> None:
    """An always-failing action: `events` dead letters, each firing the dead-letter trigger once;
    redrive to a fixed action: `events` successes and an empty list."""
    await put_action(client, "failing", FAILING)
    await put_action(client, "fixed", FIXED)
    await put_action(client, "noted", NOTED)
    await put(client, "triggers/order-events", {})
    await put(client, "triggers/alerts", {})
    await put(client, "rules/alerting", {"trigger": "alerts", "action": "noted"})
    await put(client, "rules/orders", {"trigger": "order-events", "action": "failing", "deadLetter": {"trigger": "/_/alerts"},
                                       "retry": {"maxAttempts": 2, "initialDelayMs": 10, "maxDelayMs": 50}})
    await fire_all(client, "order-events", events)
    if kill is not None:
        await kill_when(client, "failing", events, kill)
    quiet = await settle(client, rows, "failing", "noted")
    assert quiet == Quiet({"failing": 2 * events, "noted": events}, 0, 0)
    assert await dead_letter_count(client, "orders") == events
    letters: list[dict[str, Any]] = []
    while len(letters) < events:
        status, page = await client.call("GET", "namespaces/_/rules/orders/deadletters", limit=200, skip=len(letters))
        assert status == 200 and page, page
        letters.extend(page)
    failed = {r["activationId"]: annotations(r) for r in await records(client, "failing")}
    assert len({letter["eventId"] for letter in letters}) == events
    for letter in letters:
        assert letter["rule"] == "guest/orders"
        assert letter["attempts"] == 2
        assert letter["reason"] == "application error after 2 attempt(s) (retry.maxAttempts is 2)"
        assert failed[letter["activationId"]]["attempt"] == 2
        assert failed[letter["activationId"]]["event"] == letter["eventId"]
    alerts = await records(client, "noted")
    assert Counter(r["response"]["result"]["eventId"] for r in alerts) == Counter(l["eventId"] for l in letters)

    status, body = await client.call("POST", "namespaces/_/rules/orders/deadletters/redrive", {"action": "fixed"})
    assert status == 202, body
    assert len(set(body["activationIds"])) == events
    if kill is not None:
        await kill_when(client, "fixed", events // 4, kill)
    quiet = await settle(client, rows, "failing", "noted", "fixed")
    assert quiet == Quiet({"failing": 2 * events, "noted": events, "fixed": events}, 0, 0)
    fixed = await records(client, "fixed")
    assert sorted(r["activationId"] for r in fixed) == sorted(body["activationIds"])
    assert all(r["response"]["status"] == "success" for r in fixed)
    assert sorted(r["response"]["result"]["i"] for r in fixed) == list(range(events))
    assert {annotations(r)["attempt"] for r in fixed} == {3}
    assert await dead_letter_count(client, "orders") == 0
    assert await client.call("GET", "namespaces/_/rules/orders/deadletters") == (200, [])
