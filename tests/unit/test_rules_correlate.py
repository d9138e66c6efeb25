"""Derived triggers' pure correlation logic: declarations, `all`/`sequence` over tables of cases
(late and out-of-order events included), and absence deadlines on a test clock."""

from __future__ import annotations

import pytest

from tests.plugins.clock import TestClock
from triggerhub.model import FullyQualifiedName
from triggerhub.rules.correlate import (
    MAX_PENDING, DeriveError, DeriveKind, DeriveSpec, SourceEvent, Transition, key_of, on_due, on_event, parse_spec,
)

A, B, HEART = "/guest/door", "/guest/badge", "/guest/heartbeat"
DERIVED = "/guest/derived"
WINDOW_S = 10


def spec(kind: str, window_s: float = WINDOW_S) -> DeriveSpec:
    if kind == "absence":
        return parse_spec({"kind": "absence", "from": "/_/heartbeat", "key": "$.data.deviceId", "forS": window_s}, "guest")
    return parse_spec({"kind": kind, "from": ["door", "/guest/badge"], "key": "$.data.deviceId", "windowS": window_s},
                      "guest")


def run(kind: str, events: list[tuple[str, str, float]]) -> list[list[str]]:
    """Feed (trigger, id, time in s) in arrival order; the source ids of each derived event."""
    declared, state, out = spec(kind), None, []
    for trigger, event_id, time_s in events:
        step = on_event(declared, DERIVED, "dev-1", state, SourceEvent(event_id, trigger, round(time_s * 1000)))
        state = step.state
        out.extend([e["id"] for e in d.data["events"]] for d in step.derived)
    return out


# ---------------------------------------------------------------------------- declarations


def test_a_declaration_is_normalised_with_sources_fully_qualified():
    assert spec("absence").to_json() == {"kind": "absence", "key": "$.data.deviceId", "from": HEART, "forS": 10}
    assert spec("all", 2.5).to_json() == {"kind": "all", "key": "$.data.deviceId", "from": [A, B], "windowS": 2.5}
    assert spec("sequence").sources == (FullyQualifiedName("guest", "door"), FullyQualifiedName("guest", "badge"))
    assert spec("sequence").window_ms == 10_000


@pytest.mark.parametrize(("body", "message"), [
    ({"kind": "never", "from": "t", "key": "$.data.k", "forS": 1},
     "derive.kind 'never' is not a known kind; use one of all, sequence, absence"),
    ({"kind": "absence", "from": "t", "key": "$.data.k", "forS": 0},
     "derive.forS 0 must be a number of seconds above 0 and at most 604800"),
    ({"kind": "all", "from": ["a", "b"], "key": "$.data.k", "windowS": -1},
     "derive.windowS -1 must be a number of seconds above 0 and at most 604800"),
    ({"kind": "absence", "from": "t", "key": "$.data.k", "forS": True},
     "derive.forS True must be a number of seconds above 0 and at most 604800"),
    ({"kind": "absence", "from": "t", "key": "data.k", "forS": 1},
     "derive.key 'data.k' is not a valid path: a path starts with '$', as in $.data.temp"),
    ({"kind": "absence", "from": "t", "key": "$", "forS": 1},
     "derive.key '$' is the whole event; give the path of the key such as $.data.deviceId"),
    ({"kind": "absence", "from": ["t"], "key": "$.data.k", "forS": 1},
     "derive.from ['t'] must name one trigger, as in \"/_/heartbeat\""),
    ({"kind": "sequence", "from": ["a"], "key": "$.data.k", "windowS": 1},
     "derive.from ['a'] must name two triggers for kind sequence, as in [\"/_/door\", \"/_/badge\"]"),
    ({"kind": "all", "from": ["a", "/guest/a"], "key": "$.data.k", "windowS": 1},
     "derive.from names '/guest/a' twice; name two different triggers"),
    ({"kind": "all", "from": ["a", "/guest/p/x"], "key": "$.data.k", "windowS": 1},
     "derive.from names '/guest/p/x': triggers are never inside a package"),
    ({"kind": "absence", "from": "", "key": "$.data.k", "forS": 1},
     "derive.from names '', which is not a trigger name; use /namespace/name or /_/name"),
    ({"kind": "absence", "from": "/a/b/c/d", "key": "$.data.k", "forS": 1},
     "derive.from names '/a/b/c/d', which is not a trigger name; use /namespace/name or /_/name"),
    ({"kind": "absence", "from": "t", "key": "$.data.k", "windowS": 1},
     "derive has unknown key(s) windowS for kind absence; the keys are forS, from, key, kind"),
    ("absence", "derive must be an object such as {\"kind\": \"absence\", \"from\": \"/_/t\", "
                "\"key\": \"$.data.deviceId\", \"forS\": 120}, not 'absence'"),
])
def test_a_bad_declaration_names_the_bad_value(body, message):
    with pytest.raises(DeriveError) as caught:
        parse_spec(body, "guest")
    assert str(caught.value) == message


@pytest.mark.parametrize(("data", "key"), [
    ({"deviceId": "d-1"}, "d-1"), ({"deviceId": 17}, "17"), ({"deviceId": None}, None), ({"deviceId": True}, None),
    ({"deviceId": {"a": 1}}, None), ({}, None), ("text", None),
])
def test_the_key_is_a_string_or_number_at_the_path(data, key):
    assert key_of(spec("absence"), {"data": data}) == key


# ---------------------------------------------------------------------------- all and sequence

CASES = [
    # (name, kind, events in arrival order as (trigger, id, time s), derived events as source ids)
    ("in order within the window", "all", [(A, "a1", 0), (B, "b1", 5)], [["a1", "b1"]]),
    ("reverse order is fine for all", "all", [(B, "b1", 0), (A, "a1", 5)], [["a1", "b1"]]),
    ("exactly at the window edge", "all", [(A, "a1", 0), (B, "b1", 10)], [["a1", "b1"]]),
    ("outside the window", "all", [(A, "a1", 0), (B, "b1", 11)], []),
    ("two of one source match nothing", "all", [(A, "a1", 0), (A, "a2", 1)], []),
    ("each event is used once", "all", [(A, "a1", 0), (B, "b1", 1), (B, "b2", 2)], [["a1", "b1"]]),
    ("pairs in arrival order, earliest partner first", "all",
     [(A, "a1", 0), (A, "a2", 1), (B, "b1", 2), (B, "b2", 3)], [["a1", "b1"], ["a2", "b2"]]),
    ("out of order arrival, event times decide", "all", [(B, "b1", 20), (A, "a1", 15)], [["a1", "b1"]]),
    ("late: older than the window before the newest", "all",
     [(A, "a1", 30), (A, "a2", 40), (B, "b-late", 19)], []),
    ("late but still within the window of a pending one", "all",
     [(A, "a1", 30), (A, "a2", 38), (B, "b-late", 29)], [["a1", "b-late"]]),
    ("a pending event older than the window before the newest is gone", "all",
     [(A, "a1", 30), (B, "b2", 41), (B, "b-late", 31)], []),
    ("sequence: A then B", "sequence", [(A, "a1", 0), (B, "b1", 4)], [["a1", "b1"]]),
    ("sequence: B then A is no sequence", "sequence", [(B, "b1", 0), (A, "a1", 4)], []),
    ("sequence: out-of-order arrival, in order in time", "sequence", [(B, "b1", 4), (A, "a1", 0)], [["a1", "b1"]]),
    ("sequence: out-of-order arrival, wrong order in time", "sequence", [(A, "a1", 4), (B, "b1", 0)], []),
    ("sequence: a later A pairs with a B after it", "sequence",
     [(B, "b1", 0), (A, "a1", 2), (B, "b2", 5)], [["a1", "b2"]]),
    ("sequence: B too late after A", "sequence", [(A, "a1", 0), (B, "b1", 10.001)], []),
    ("sequence: same instant counts as in order", "sequence", [(A, "a1", 3), (B, "b1", 3)], [["a1", "b1"]]),
]


@pytest.mark.parametrize(("kind", "events", "derived"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_all_and_sequence(kind, events, derived):
    assert run(kind, events) == derived


def test_a_derived_event_carries_both_events_and_its_id_repeats():
    declared = spec("all")
    first = on_event(declared, DERIVED, "dev-1", None, SourceEvent("a1", A, 1_000, {"open": True}))
    assert first.derived == () and first.due_ms == 1_000 + 20_000
    done = on_event(declared, DERIVED, "dev-1", first.state, SourceEvent("b1", B, 3_000, {"badge": 7}))
    again = on_event(declared, DERIVED, "dev-1", first.state, SourceEvent("b1", B, 3_000, {"badge": 7}))
    assert done == again and done.state is None and done.due_ms is None
    (derived,) = done.derived
    assert derived.time_ms == 3_000 and len(derived.id) == 32
    assert derived.data == {"kind": "all", "key": "dev-1", "windowS": 10, "events": [
        {"id": "a1", "trigger": A, "timeMs": 1_000, "data": {"open": True}},
        {"id": "b1", "trigger": B, "timeMs": 3_000, "data": {"badge": 7}}]}


def test_unmatched_events_are_bounded_and_dropped_two_windows_after_the_newest():
    declared = spec("all")
    state = None
    for i in range(MAX_PENDING + 5):
        step = on_event(declared, DERIVED, "k", state, SourceEvent(f"a{i}", A, 5_000 + i, None))
        state = step.state
    assert state is not None and len(state["pending"]) == MAX_PENDING
    assert state["pending"][0]["id"] == "a5"
    newest_ms = 5_000 + MAX_PENDING + 4
    assert step.due_ms == newest_ms + 20_000
    assert on_due(declared, DERIVED, "k", state, newest_ms + 19_999) == Transition(state, newest_ms + 20_000)
    assert on_due(declared, DERIVED, "k", state, newest_ms + 20_000) == Transition(None, None)


# ---------------------------------------------------------------------------- absence


async def test_absence_derives_once_per_silence_and_rearms_when_heard_on_a_test_clock():
    clock = TestClock(now_s=1_000)
    declared = spec("absence", 120)

    def heard(state, event_id):
        return on_event(declared, DERIVED, "dev-7", state, SourceEvent(event_id, HEART, clock.now_ms(), {"v": 1}))

    step = heard(None, "h1")
    assert step.due_ms == 1_120_000 and step.derived == ()
    await clock.advance(60)
    step = heard(step.state, "h2")  # heard again: the deadline moves
    assert step.due_ms == 1_180_000
    await clock.advance(119.999)
    assert on_due(declared, DERIVED, "dev-7", step.state, clock.now_ms()) == Transition(step.state, 1_180_000)
    await clock.advance(0.001)
    silent = on_due(declared, DERIVED, "dev-7", step.state, clock.now_ms())
    (derived,) = silent.derived
    assert derived.data == {"kind": "absence", "key": "dev-7", "forS": 120, "silentSinceMs": 1_060_000,
                            "deadlineMs": 1_180_000,
                            "events": [{"id": "h2", "trigger": HEART, "timeMs": 1_060_000, "data": {"v": 1}}]}
    assert derived.time_ms == 1_180_000 and silent.due_ms is None and silent.state["armed"] is False
    # Disarmed: no second derived event, however long the silence lasts.
    await clock.advance(3600)
    assert on_due(declared, DERIVED, "dev-7", silent.state, clock.now_ms()).derived == ()
    # Heard again: re-armed, and the next silence derives a new event with another id.
    again = heard(silent.state, "h3")
    assert again.due_ms == clock.now_ms() + 120_000
    await clock.advance(120)
    (second,) = on_due(declared, DERIVED, "dev-7", again.state, clock.now_ms()).derived
    assert second.id != derived.id
    assert on_due(declared, DERIVED, "dev-7", again.state, clock.now_ms()).derived[0].id == second.id


def test_absence_ignores_a_late_event_older_than_the_last_heard():
    declared = spec("absence", 120)
    step = on_event(declared, DERIVED, "d", None, SourceEvent("h2", HEART, 50_000))
    late = on_event(declared, DERIVED, "d", step.state, SourceEvent("h1", HEART, 40_000))
    assert late == Transition(step.state, 170_000)
    assert DeriveKind(declared.kind) is DeriveKind.ABSENCE


def test_after_a_restart_a_key_gets_the_full_silence_before_it_counts_as_silent():
    """Events sent while no one listened arrive after the restart: a deadline that passed in the
    meantime moves to forS after the restart, and the derived event keeps its id."""
    declared = spec("absence", 120)
    heard = on_event(declared, DERIVED, "d", None, SourceEvent("h1", HEART, 10_000))
    restarted_ms = 200_000
    waiting = on_due(declared, DERIVED, "d", heard.state, 201_000, listening_since_ms=restarted_ms)
    assert waiting == Transition(heard.state, 320_000)
    (late,) = on_due(declared, DERIVED, "d", heard.state, 320_000, listening_since_ms=restarted_ms).derived
    (early,) = on_due(declared, DERIVED, "d", heard.state, 130_000).derived
    assert late.id == early.id and late.data["deadlineMs"] == 320_000 and late.data["silentSinceMs"] == 10_000


def test_an_event_that_waited_in_a_backlog_counts_from_when_it_was_heard():
    declared = spec("absence", 3)
    waited = on_event(declared, DERIVED, "d", None, SourceEvent("h1", HEART, 10_000, heard_ms=60_000))
    assert waited.due_ms == 63_000 and waited.state["heardMs"] == 60_000
    assert on_due(declared, DERIVED, "d", waited.state, 62_999).derived == ()
    (silent,) = on_due(declared, DERIVED, "d", waited.state, 63_000).derived
    assert (silent.data["silentSinceMs"], silent.data["deadlineMs"]) == (10_000, 63_000)


@pytest.mark.parametrize("stored", [
    {"pending": [{"id": "a1", "timeMs": 1, "source": 0}], "watermarkMs": 1},  # written as `all`
    {"armed": "yes", "heardMs": 1, "last": {"id": "x", "timeMs": 1}}, {"last": None}, {},
])
def test_state_of_another_shape_is_dropped_never_an_error(stored):
    """After a derived trigger's kind changed, its old state starts afresh."""
    declared = spec("absence", 5)
    assert on_event(declared, DERIVED, "d", stored, SourceEvent("h", HEART, 1_000)).due_ms == 6_000
    assert on_due(declared, DERIVED, "d", stored, 10_000) == Transition(None, None)
    pairs = spec("all")
    absent_state = {"armed": True, "heardMs": 1, "last": {"id": "x", "timeMs": 1}}
    assert on_event(pairs, DERIVED, "d", absent_state, SourceEvent("a1", A, 1_000)).state["pending"][0]["id"] == "a1"
