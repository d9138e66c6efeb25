"""The dashboard stream's pure parts: which records are new, where a rule activation came from,
and a second's summary (counts and nearest-rank percentiles)."""

from __future__ import annotations

import json

from triggerhub.api.dashboard import NewRecords, Origins, SecondSummary, row_json
from triggerhub.model import Activation, ActivationResponse, StatusCode


def record(activation_id: str, name: str, *, end_ms: int = 0, duration_ms: int = 0,
           logs: tuple[str, ...] = (), code: StatusCode = StatusCode.SUCCESS) -> Activation:
    start_ms = 1_000
    return Activation(namespace="guest", name=name, subject="guest", activation_id=activation_id, start_ms=start_ms,
                      end_ms=end_ms and start_ms + duration_ms, response=ActivationResponse(code, {}), logs=logs)


def rule_line(rule: str, activation_id: str) -> str:
    return json.dumps({"rule": rule, "action": "guest/echo", "statusCode": 0, "success": True,
                       "activationId": activation_id})


def test_a_record_is_new_once():
    seen = NewRecords()
    a, b, c = (record(i * 32, "echo", end_ms=1) for i in "abc")
    assert seen.pick([b, a]) == [b, a]
    assert seen.pick([c, b, a]) == [c]
    assert seen.pick([c, b, a]) == []


def test_a_rule_activation_gets_its_trigger_and_rule_from_the_trigger_activation_logs():
    origins = Origins(capacity=10)
    fired = record("t" * 32, "readings", logs=(rule_line("guest/hot", "r" * 32), "not json", rule_line("guest/cold", "s" * 32)))
    origins.learn(fired)
    run = record("r" * 32, "echo", end_ms=1, duration_ms=7)
    row = row_json(run, origins.of(run))
    assert (row["trigger"], row["triggerActivation"], row["rule"], row["duration"], row["status"]) == (
        "readings", "t" * 32, "guest/hot", 7, "success")
    assert row_json(fired, origins.of(fired))["trigger"] == "readings"
    assert origins.of(record("x" * 32, "echo", end_ms=1)) is None


def test_origins_keep_only_the_newest():
    origins = Origins(capacity=2)
    origins.learn(record("t" * 32, "readings", logs=tuple(rule_line("guest/r", c * 32) for c in "abc")))
    assert [origins.of(record(c * 32, "echo", end_ms=1)) is not None for c in "abc"] == [False, True, True]


def test_a_second_counts_fires_per_trigger_and_nearest_rank_percentiles_per_action_and_rule():
    origins = Origins(capacity=200)
    origins.learn(record("t" * 32, "readings", logs=tuple(rule_line("guest/hot", f"{i:032x}") for i in range(100))))
    summary = SecondSummary()
    summary.add(record("t" * 32, "readings"), None)
    summary.add(record("u" * 32, "readings"), None)
    for i in range(100):
        run = record(f"{i:032x}", "echo", end_ms=1, duration_ms=i + 1)
        summary.add(run, origins.of(run))
    summary.add(record("e" * 32, "other", end_ms=1, duration_ms=5, code=StatusCode.APPLICATION_ERROR), None)
    assert summary.to_json(42) == {
        "t": 42, "capped": False, "triggers": {"readings": 2},
        "actions": {"echo": {"count": 100, "p50": 50, "p95": 95, "p99": 99},
                    "other": {"count": 1, "p50": 5, "p95": 5, "p99": 5}},
        "rules": {"guest/hot": {"count": 100, "p50": 50, "p95": 95, "p99": 99}},
    }
