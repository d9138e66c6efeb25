"""Waiting retries and dead letters in the store (migration 4), on SQLite and PostgreSQL: claims
under a lease (never two owners at once, a dead owner's rows come back after the lease),
starting a retry once, and dead letters replaced per (rule, event)."""

from __future__ import annotations

import asyncio

from tests.plugins.invoker import make_action, make_invocation
from triggerhub.model import Activation, ActivationResponse, DeadLetter, Delivery, Invocation, Rule, FullyQualifiedName
from triggerhub.store.base import Acceptance, RedriveClaim
from triggerhub.store.sql import SqlStore

T0_MS = 1_800_000_000_000


def attempt(n: int, event: str = "e1") -> Invocation:
    return make_invocation(make_action("python:3.11", "x"), {"i": n}, activation_id=f"{n:032x}", accepted_ms=T0_MS,
                           delivery=Delivery("guest/r", event, 2))


async def test_due_retries_are_claimed_by_one_owner_until_the_lease_ends(store: SqlStore):
    for n in range(1, 11):
        assert await store.put_retry(attempt(n), rule="guest/r", due_ms=T0_MS + n) is True
    assert await store.put_retry(attempt(1), rule="guest/r", due_ms=T0_MS) is False, "kept once per attempt"
    assert await store.next_retry_due_ms() == T0_MS + 1
    assert await store.claim_retries(now_ms=T0_MS, owner="a", lease_ms=1000, limit=100) == [], "none due yet"

    first, second = await asyncio.gather(
        store.claim_retries(now_ms=T0_MS + 10, owner="a", lease_ms=1000, limit=6),
        store.claim_retries(now_ms=T0_MS + 10, owner="b", lease_ms=1000, limit=6))
    ids_a, ids_b = {i.activation_id for i in first}, {i.activation_id for i in second}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 10, "every due row claimed once"
    assert first[0] == attempt(int(first[0].activation_id, 16)), "the invocation comes back whole"
    assert await store.claim_retries(now_ms=T0_MS + 500, owner="c", lease_ms=1000, limit=100) == []

    # Owner a "dies": its rows come back once the lease ended; b's rows it deletes only as b.
    back = await store.claim_retries(now_ms=T0_MS + 1010, owner="c", lease_ms=1000, limit=100)
    assert {i.activation_id for i in back} == ids_a | ids_b
    one = back[0].activation_id
    assert await store.delete_retry(one, owner="a") is False
    assert await store.delete_retry(one, owner="c") is True
    assert await store.count_retries() == 9 and await store.count_retries("guest/other") == 0


async def test_a_retry_is_made_pending_once_and_not_at_all_once_recorded(store: SqlStore):
    retry = attempt(1)
    assert await store.prepare_retry(retry) is True
    assert await store.prepare_retry(retry) is True, "a start that died before the hand-over: still to run"
    assert [p.activation_id for p in await store.list_pending()] == [retry.activation_id]
    record = Activation("guest", "hello", "guest", retry.activation_id, T0_MS, T0_MS + 1,
                        ActivationResponse.ok({}))
    assert await store.complete(record) is True
    assert await store.prepare_retry(retry) is False, "recorded: nothing left to run"
    assert await store.list_pending() == []


async def test_dead_letters_are_replaced_per_rule_and_event_and_go_with_their_rule(store: SqlStore):
    def letter(event: str, reason: str, created_ms: int) -> DeadLetter:
        return DeadLetter(f"{event:0>32}", "guest/r", event, "a" * 32, reason, 2, created_ms, attempt(2, event))

    await store.put_dead_letter(letter("e1", "application error after 2 attempt(s)", T0_MS))
    await store.put_dead_letter(letter("e2", "timeout after 2 attempt(s)", T0_MS + 1))
    await store.put_dead_letter(letter("e1", "application error on redrive (attempt 3)", T0_MS))
    assert await store.count_dead_letters("guest/r") == 2
    listed = await store.list_dead_letters("guest/r")
    assert [(d.event_id, d.reason) for d in listed] == [("e1", "application error on redrive (attempt 3)"),
                                                        ("e2", "timeout after 2 attempt(s)")]
    assert listed[0].invocation == attempt(2, "e1")
    assert [d.event_id for d in await store.list_dead_letters("guest/r", ids=[f"{'e2':0>32}"])] == ["e2"]
    assert [d.event_id for d in await store.list_dead_letters("guest/r", skip=1, limit=5)] == ["e2"]
    assert await store.delete_dead_letter(f"{'e2':0>32}") is True
    assert await store.delete_dead_letter(f"{'e2':0>32}") is False

    rule = Rule("guest", "r", FullyQualifiedName("guest", "t"), FullyQualifiedName("guest", "hello"))
    [written] = await store.put_entities([rule])
    await store.put_retry(attempt(3), rule="guest/r", due_ms=T0_MS)
    await store.put_entities([], [written])
    assert await store.count_dead_letters("guest/r") == 0 and await store.count_retries("guest/r") == 0
    assert await store.accept(Acceptance()) is True


async def test_a_letter_is_claimed_by_one_redrive_until_it_is_given_up_again(store: SqlStore):
    letter = DeadLetter("1" * 32, "guest/r", "e1", "a" * 32, "application error after 2 attempt(s)", 2, T0_MS,
                        attempt(2))
    await store.put_dead_letter(letter)
    runs = [attempt(n) for n in (10, 11)]
    first, second = await asyncio.gather(*[
        store.accept(Acceptance(invocations=[run], redrive=RedriveClaim(letter.id, run.activation_id))) for run in runs])
    assert sorted([first, second]) == [False, True], "one claim wins, in the accepting transaction"
    winner = runs[0] if first else runs[1]
    assert [p.activation_id for p in await store.list_pending()] == [winner.activation_id], "the loser wrote nothing"
    [listed] = await store.list_dead_letters("guest/r")
    assert listed.redriven_by == winner.activation_id
    assert listed.to_json()["redrivenBy"] == winner.activation_id
    third = attempt(12)
    assert await store.accept(Acceptance(invocations=[third], redrive=RedriveClaim(letter.id, third.activation_id))) \
        is False

    # The redrive gave up: the replaced letter may be redriven again.
    await store.put_dead_letter(DeadLetter(letter.id, "guest/r", "e1", winner.activation_id, "again", 3, T0_MS,
                                           winner))
    [listed] = await store.list_dead_letters("guest/r")
    assert (listed.redriven_by, listed.reason, listed.attempts) == (None, "again", 3)
    assert "redrivenBy" not in listed.to_json()
    assert await store.accept(Acceptance(invocations=[third], redrive=RedriveClaim(letter.id, third.activation_id)))
    assert await store.delete_dead_letter(letter.id) is True
    fourth = attempt(13)
    assert await store.accept(Acceptance(invocations=[fourth], redrive=RedriveClaim(letter.id, fourth.activation_id))) \
        is False, "a letter that left (its redrive succeeded) is not run again"
