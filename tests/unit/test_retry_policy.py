"""The retry policy (rules/retry_policy.py): parsing with exact errors, which outcomes retry, the
backoff bounds with jitter, max event age, the namespace default, and the delivery keys."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from triggerhub.errors import BadRequest
from triggerhub.model import Delivery, FullyQualifiedName, Parameter, Rule, StatusCode
from triggerhub.rules.retry_policy import (
    DEFAULT_ON, NO_RETRY, GiveUp, Outcome, Retry, RetryPolicy, backoff_ms, decide, namespace_policy, on_mask,
    on_names, outcome_of,
    parse_dead_letter, parse_retry,
)

HOUR_MS = 3_600_000


def test_an_empty_policy_takes_the_documented_defaults():
    assert parse_retry({}) == RetryPolicy(3, 200, 60_000, 86_400, DEFAULT_ON)
    assert DEFAULT_ON == (Outcome.APPLICATION_ERROR, Outcome.INTERNAL_ERROR, Outcome.TIMEOUT)
    assert parse_retry({}).to_json() == {"maxAttempts": 3, "initialDelayMs": 200, "maxDelayMs": 60000,
                                         "maxEventAgeS": 86400, "on": ["application error", "internal error", "timeout"]}


def test_the_issue_example_parses():
    policy = parse_retry({"maxAttempts": 3, "initialDelayMs": 200, "maxDelayMs": 60000, "maxEventAgeS": 86400,
                          "on": ["application error", "timeout"]})
    assert policy == RetryPolicy(3, 200, 60_000, 86_400, (Outcome.APPLICATION_ERROR, Outcome.TIMEOUT))


@pytest.mark.parametrize(("value", "message"), [
    ([], "retry must be an object like {\"maxAttempts\": 3, \"initialDelayMs\": 200}; got []"),
    ({"maxAttempt": 3}, "retry: unknown key 'maxAttempt'; allowed: maxAttempts, initialDelayMs, maxDelayMs, "
                        "maxEventAgeS, on"),
    ({"maxAttempts": 0}, "retry.maxAttempts is 0; give a whole number from 1 to 100"),
    ({"maxAttempts": 101}, "retry.maxAttempts is 101; give a whole number from 1 to 100"),
    ({"maxAttempts": "3"}, "retry.maxAttempts is '3'; give a whole number from 1 to 100"),
    ({"maxAttempts": True}, "retry.maxAttempts is True; give a whole number from 1 to 100"),
    ({"maxAttempts": 2.5}, "retry.maxAttempts is 2.5; give a whole number from 1 to 100"),
    ({"initialDelayMs": -1}, "retry.initialDelayMs is -1; give a whole number from 0 to 86400000"),
    ({"maxEventAgeS": 0}, "retry.maxEventAgeS is 0; give a whole number from 1 to 604800"),
    ({"initialDelayMs": 500, "maxDelayMs": 100},
     "retry.maxDelayMs (100) is below initialDelayMs (500); raise maxDelayMs or lower initialDelayMs"),
    ({"on": []}, "retry.on must be a non-empty array of outcomes from 'application error', 'developer error', "
                 "'internal error', 'timeout'; got []"),
    ({"on": "timeout"}, "retry.on must be a non-empty array of outcomes from 'application error', "
                        "'developer error', 'internal error', 'timeout'; got 'timeout'"),
    ({"on": ["timeout", "crash"]}, "retry.on: unknown outcome 'crash'; allowed: 'application error', "
                                   "'developer error', 'internal error', 'timeout'"),
])
def test_bad_policies_are_refused_naming_the_value(value: Any, message: str):
    with pytest.raises(BadRequest) as refused:
        parse_retry(value)
    assert refused.value.message == message
    assert refused.value.status == 400


def test_outcomes_from_records():
    assert outcome_of(StatusCode.SUCCESS, timed_out=False) is Outcome.SUCCESS
    assert outcome_of(StatusCode.APPLICATION_ERROR, timed_out=False) is Outcome.APPLICATION_ERROR
    assert outcome_of(StatusCode.DEVELOPER_ERROR, timed_out=False) is Outcome.DEVELOPER_ERROR
    assert outcome_of(StatusCode.WHISK_ERROR, timed_out=False) is Outcome.INTERNAL_ERROR
    assert outcome_of(StatusCode.DEVELOPER_ERROR, timed_out=True) is Outcome.TIMEOUT  # OpenWhisk's timeouts


@pytest.mark.parametrize(("attempt", "low", "high"), [
    (1, 100, 200), (2, 200, 400), (3, 400, 800), (4, 800, 1600), (9, 25_600, 51_200), (10, 30_000, 60_000),
    (11, 30_000, 60_000), (80, 30_000, 60_000),
])
def test_backoff_doubles_up_to_the_cap_with_equal_jitter(attempt: int, low: int, high: int):
    policy = RetryPolicy(initial_delay_ms=200, max_delay_ms=60_000)
    assert backoff_ms(policy, attempt, lambda: 0.0) == low
    assert backoff_ms(policy, attempt, lambda: 1.0) == high
    assert low <= backoff_ms(policy, attempt) <= high


def test_jitter_spreads_retries_of_many_events():
    policy = RetryPolicy(initial_delay_ms=1000)
    pauses = {backoff_ms(policy, 1) for _ in range(200)}
    assert len(pauses) > 50 and min(pauses) >= 500 and max(pauses) <= 1000


def test_which_outcomes_retry():
    policy = parse_retry({"maxAttempts": 5, "initialDelayMs": 0, "on": ["application error", "timeout"]})
    at = {"attempt": 1, "event_time_ms": 0, "now_ms": 0}
    assert decide(policy, outcome=Outcome.APPLICATION_ERROR, **at) == Retry(0)
    assert decide(policy, outcome=Outcome.TIMEOUT, **at) == Retry(0)
    assert decide(policy, outcome=Outcome.SUCCESS, **at) is None
    assert decide(policy, outcome=Outcome.DEVELOPER_ERROR, **at) == GiveUp(
        "developer error (retry.on does not include it) after 1 attempt(s)")
    assert decide(policy, outcome=Outcome.INTERNAL_ERROR, **at) == GiveUp(
        "internal error (retry.on does not include it) after 1 attempt(s)")


def test_the_last_attempt_gives_up():
    policy = RetryPolicy(max_attempts=3, initial_delay_ms=100, max_delay_ms=100)
    kept = decide(policy, attempt=2, outcome=Outcome.APPLICATION_ERROR, event_time_ms=0, now_ms=0)
    assert isinstance(kept, Retry) and 50 <= kept.delay_ms <= 100
    assert decide(policy, attempt=3, outcome=Outcome.APPLICATION_ERROR, event_time_ms=0, now_ms=0) == GiveUp(
        "application error after 3 attempt(s) (retry.maxAttempts is 3)")
    assert decide(NO_RETRY, attempt=1, outcome=Outcome.TIMEOUT, event_time_ms=0, now_ms=0) == GiveUp(
        "timeout after 1 attempt(s) (retry.maxAttempts is 1)")


def test_an_event_past_its_max_age_at_the_next_attempt_gives_up():
    policy = RetryPolicy(max_attempts=10, initial_delay_ms=HOUR_MS, max_delay_ms=HOUR_MS, max_event_age_s=7200)
    young = decide(policy, attempt=1, outcome=Outcome.TIMEOUT, event_time_ms=0, now_ms=0,
                   random_fraction=lambda: 1.0)
    assert young == Retry(HOUR_MS)
    assert decide(policy, attempt=2, outcome=Outcome.TIMEOUT, event_time_ms=0, now_ms=HOUR_MS,
                  random_fraction=lambda: 1.0) == Retry(HOUR_MS)  # exactly 7200 s old then: still allowed
    assert decide(policy, attempt=3, outcome=Outcome.TIMEOUT, event_time_ms=0, now_ms=HOUR_MS + 1,
                  random_fraction=lambda: 1.0) == GiveUp(
        "timeout after 3 attempt(s); the event would be 7200 s old at the next attempt (retry.maxEventAgeS is 7200)")


def test_the_namespace_default_applies_only_when_set():
    assert namespace_policy({}) is None
    assert namespace_policy({"invocationsPerMinute": 10}) is None
    assert namespace_policy({"retryMaxAttempts": 4, "retryInitialDelayMs": 50}) == RetryPolicy(4, 50)
    with pytest.raises(BadRequest) as refused:
        namespace_policy({"retryMaxAttempts": 0})
    assert refused.value.message == "namespace retry default.maxAttempts is 0; give a whole number from 1 to 100"


def test_the_namespace_default_on_list_is_kept_as_bits_and_read_back_by_name():
    mask = on_mask("timeout, developer error")
    assert (mask, on_names(mask)) == (10, ["developer error", "timeout"])
    assert on_mask(["application error"]) == 1
    assert namespace_policy({"retryMaxAttempts": 2, "retryOn": mask}) == RetryPolicy(
        2, on=(Outcome.DEVELOPER_ERROR, Outcome.TIMEOUT))
    with pytest.raises(BadRequest) as refused:
        on_mask("timeout,crash", where="--retryOn")
    assert refused.value.message == ("--retryOn: unknown outcome 'crash'; allowed: 'application error', "
                                     "'developer error', 'internal error', 'timeout'")
    with pytest.raises(BadRequest) as empty:
        on_mask(" , ")
    assert empty.value.message.startswith("retryOn must be a non-empty array of outcomes")
    for stored in (0, 16, True):
        with pytest.raises(BadRequest) as broken:
            namespace_policy({"retryMaxAttempts": 2, "retryOn": stored})
        assert broken.value.message == (
            f"namespace retry default: retryOn is {stored!r}, not a set of outcomes; set it again with --retryOn "
            "from 'application error', 'developer error', 'internal error', 'timeout'")


def test_dead_letter_targets():
    assert parse_dead_letter({"trigger": "/guest/alerts"}, "guest") == FullyQualifiedName("guest", "alerts")
    assert parse_dead_letter({"trigger": "alerts"}, "guest") == FullyQualifiedName("guest", "alerts")
    assert parse_dead_letter({"trigger": "/_/alerts"}, "guest") == FullyQualifiedName("guest", "alerts")
    for bad in ("/guest/alerts", {"trigger": 3}, {"trigger": "/guest/a", "extra": 1}):
        with pytest.raises(BadRequest) as refused:
            parse_dead_letter(bad, "guest")
        assert refused.value.message.startswith("deadLetter must be an object {\"trigger\": \"/namespace/name\"}; got ")


def test_delivery_keys_are_stable_per_rule_event_and_attempt():
    first = Delivery("guest/r", "e1", 1)
    again = Delivery("guest/r", "e1", 1, event_time_ms=5)
    second = Delivery("guest/r", "e1", 2)
    other_rule = Delivery("guest/s", "e1", 1)
    assert first.idempotency_key == again.idempotency_key == f"{first.delivery_key}-1"
    assert second.delivery_key == first.delivery_key and second.idempotency_key == f"{first.delivery_key}-2"
    assert other_rule.delivery_key != first.delivery_key
    assert len(first.delivery_key) == 32
    assert first.run_environment() == {"rule": "guest/r", "event_id": "e1", "attempt": "1",
                                       "delivery_key": first.delivery_key, "idempotency_key": first.idempotency_key}


def test_a_replayed_run_and_a_redrive_have_their_own_ids_and_counts():
    from triggerhub.engine.deliveries import retry_activation_id

    live = Delivery("guest/r", "e1", 2)
    replayed = Delivery("guest/r", "e1", 2, replay="a" * 32)
    assert replayed.delivery_key != live.delivery_key, "a replay is asked to run the event again"
    assert retry_activation_id(replayed) != retry_activation_id(live)
    assert retry_activation_id(live) == retry_activation_id(Delivery("guest/r", "e1", 2, event_time_ms=9)), \
        "the same attempt settled twice (a crash) keeps one retry id"
    redrive = Delivery("guest/r", "e1", 4, redrive="letter", first_attempt=3, failed_activation_id="b" * 32)
    assert (redrive.run_attempt, redrive.delivery_key) == (2, live.delivery_key)
    for delivery in (live, replayed, redrive):
        assert Delivery.from_json(delivery.to_json()) == delivery
    assert live.to_json() == {"rule": "guest/r", "eventId": "e1", "attempt": 2, "eventTimeMs": 0, "redrive": None}


def test_which_policy_a_rule_gets():
    from triggerhub.engine.deliveries import rule_policy

    rule = Rule("guest", "r", FullyQualifiedName("guest", "t"), FullyQualifiedName("guest", "a"))
    assert rule_policy(rule, {}) is None, "OpenWhisk's behaviour without a policy"
    assert rule_policy(rule, {"retryMaxAttempts": 5}) == RetryPolicy(max_attempts=5)
    with_letters = replace(rule, dead_letter={"trigger": "alerts"})
    assert rule_policy(with_letters, {}) == NO_RETRY
    own = replace(with_letters, retry={"maxAttempts": 2})
    assert rule_policy(own, {"retryMaxAttempts": 5}) == RetryPolicy(max_attempts=2), "the rule's own policy wins"


def test_attempt_annotations_follow_routing_provenance_without_repeating_it():
    from triggerhub.engine.deliveries import attempt_annotations

    routed = (Parameter("rule", "guest/r"), Parameter("event", "e1"))
    assert attempt_annotations(routed, Delivery("guest/r", "e1", 1)) == (*routed, Parameter("attempt", 1))
    again = attempt_annotations(attempt_annotations((), Delivery("guest/r", "e1", 1)), Delivery("guest/r", "e1", 2))
    assert again == (Parameter("rule", "guest/r"), Parameter("event", "e1"), Parameter("attempt", 2))
    redriven = attempt_annotations(again, Delivery("guest/r", "e1", 3, redrive="d" * 32))
    assert redriven == (*again[:2], Parameter("attempt", 3), Parameter("redrive", "d" * 32))
