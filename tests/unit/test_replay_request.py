"""Replay request bodies, pure: accepted times and windows, and the 400 each bad value gets."""

from __future__ import annotations

import pytest

from triggerhub.engine.replay import Outcome, Replayed, ReplayRequest, parse_request, parse_time, replay_answer
from triggerhub.errors import BadRequest

NOT_A_TIME = ("is not a time; give an ISO-8601 time with a zone (2026-12-05T08:00:00Z) or epoch milliseconds "
              "(1764921600000), from 1970 to 9999")


@pytest.mark.parametrize(("value", "expected_ms"), [
    ("2026-12-05T08:00:00Z", 1_796_457_600_000),
    ("2026-12-05T09:00:00.250+01:00", 1_796_457_600_250),
    (1_796_457_600_000, 1_796_457_600_000),
    (0, 0),
])
def test_times_are_epoch_ms_or_iso_8601_with_a_zone(value, expected_ms):
    assert parse_time(value, "from") == expected_ms


@pytest.mark.parametrize(("value", "message"), [
    ("2026-12-05T08:00:00", "replay \"to\": '2026-12-05T08:00:00' has no time zone; add Z or an offset like +01:00"),
    ("0001-01-01T00:00:00+14:00", f"replay \"to\": '0001-01-01T00:00:00+14:00' {NOT_A_TIME}"),
    (10 ** 20, f"replay \"to\": {10 ** 20} {NOT_A_TIME}"),
    (-1, f"replay \"to\": -1 {NOT_A_TIME}"),
    (True, f"replay \"to\": true {NOT_A_TIME}"),
    (None, f"replay \"to\": null {NOT_A_TIME}"),
    ("x" * 200, f"replay \"to\": '{'x' * 76}... {NOT_A_TIME}"),
])
def test_a_bad_time_is_400_naming_it(value, message):
    with pytest.raises(BadRequest) as caught:
        parse_time(value, "to")
    assert caught.value.message == message


def test_a_window_and_ids_parse_to_requests():
    assert parse_request({"from": 5, "to": 5, "force": True}, max_events=10) == ReplayRequest(None, 5, 5, force=True)
    assert parse_request({"ids": ["b", "a", "b"]}, max_events=2) == ReplayRequest(("b", "a"))


def test_more_ids_than_the_limit_are_refused_before_anything_is_read():
    with pytest.raises(BadRequest) as caught:
        parse_request({"ids": ["a", "b", "c"]}, max_events=2)
    assert caught.value.message == ('replay "ids": 3 events is more than TRIGGERHUB_REPLAY_MAX_EVENTS=2; '
                                    "replay them in several requests")


def test_the_answer_counts_each_outcome_and_shows_the_first_ten_errors():
    replayed = [Replayed("e1", Outcome.RUN, "a1"), Replayed("e2", Outcome.SKIPPED), Replayed("e3", Outcome.FILTERED),
                *[Replayed(f"f{i}", Outcome.FAILED, error=f"transform $.x: boom {i}") for i in range(11)]]
    answer = replay_answer("guest/r", ReplayRequest(("e1",)), replayed)
    assert {k: v for k, v in answer.items() if k != "errors"} == {
        "rule": "guest/r", "force": False, "events": 14, "matched": 13, "run": 1, "skipped": 1, "filtered": 1,
        "failed": 11, "activationIds": ["a1"]}
    assert answer["errors"] == [f"event f{i}: transform $.x: boom {i}" for i in range(10)]
