"""The step of distributed mode's derived-trigger table (engine/derive_table.py), on a test clock
with a fake publisher at its seam: a redelivered source event is applied once, a crash between
publishing a derived event and writing the table publishes the same event id again, absence
deadlines are ticked once, and a key without state is forgotten after FORGET_AFTER_MS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.plugins.clock import TestClock
from triggerhub.engine.derive_table import APPLIED_MAX, FORGET_AFTER_MS, TICK, KeyValue, TableDeriver, table_key
from triggerhub.errors import BusError
from triggerhub.model import FullyQualifiedName, TriggerEvent
from triggerhub.rules.correlate import DeriveSpec, parse_spec

FOR_S = 10
START_S = 1_000_000.0


class Specs:
    """The seam to the derived triggers' declarations: a fixed table of them."""

    def __init__(self, **specs: DeriveSpec) -> None:
        self._specs = specs
        self.listening_since_ms = 0

    async def find_spec(self, name: str) -> tuple[FullyQualifiedName, DeriveSpec | None]:
        return FullyQualifiedName.parse(name, "_"), self._specs.get(name.rsplit("/", 1)[-1])


class Published:
    """The seam to Kafka: records each derived event; refuses the next `down` publishes."""

    def __init__(self) -> None:
        self.events: list[TriggerEvent] = []
        self.down = 0
        self.refused = 0

    async def __call__(self, event: TriggerEvent) -> None:
        if self.down:
            self.down -= 1
            self.refused += 1
            raise BusError("Kafka is down")
        self.events.append(event)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(START_S)


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def table(clock: TestClock, published: Published) -> TableDeriver:
    both = parse_spec({"kind": "all", "from": ["door", "badge"], "key": "$.data.deviceId", "windowS": 60}, "guest")
    silent = parse_spec({"kind": "absence", "from": "heartbeat", "key": "$.data.deviceId", "forS": FOR_S}, "guest")
    return TableDeriver(Specs(both=both, silent=silent), published, clock=clock)


def source(event_id: str, trigger: str, time_ms: int) -> bytes:
    return json.dumps({"event": {"id": event_id, "trigger": f"/guest/{trigger}", "timeMs": time_ms,
                                 "heardMs": time_ms, "data": {"deviceId": "dev-1"}}}).encode()


async def feed(table: TableDeriver, key: str, messages: list[bytes], stored: bytes | None = None) -> bytes | None:
    for message in messages:
        stored = await table.step(key, stored, message)
    return stored


BOTH, SILENT = table_key("/guest/both", "dev-1"), table_key("/guest/silent", "dev-1")
T0 = int(START_S * 1000)


async def test_a_redelivered_source_event_is_applied_once(table: TableDeriver, published: Published) -> None:
    after_b1 = await feed(table, BOTH, [source("a1", "door", T0), source("b1", "badge", T0 + 1)])
    assert len(published.events) == 1
    assert KeyValue.loads(after_b1) == KeyValue(None, T0 + FORGET_AFTER_MS, ("a1", "b1"))

    # b1 again (its offset was not committed): nothing changes, so a later a2 finds no b1 to pair with
    assert await table.step(BOTH, after_b1, source("b1", "badge", T0 + 1)) == after_b1
    after_a2 = await table.step(BOTH, after_b1, source("a2", "door", T0 + 2))
    assert len(published.events) == 1
    assert [p["id"] for p in KeyValue.loads(after_a2).state["pending"]] == ["a2"]


async def test_a_crash_between_publish_and_table_write_publishes_the_same_event_id(
        table: TableDeriver, published: Published) -> None:
    after_a1 = await feed(table, BOTH, [source("a1", "door", T0)])
    await table.step(BOTH, after_a1, source("b1", "badge", T0 + 1))
    # The write after the publish was lost: b1 is redelivered onto the value before it.
    again = await table.step(BOTH, after_a1, source("b1", "badge", T0 + 1))
    first, second = published.events
    assert first.id == second.id and first.data == second.data and str(first.trigger) == "/guest/both"
    assert KeyValue.loads(again).applied == ("a1", "b1")


async def test_a_refused_publish_is_retried_before_the_table_write(published: Published) -> None:
    clock = TestClock(START_S, autojump=True)
    both = parse_spec({"kind": "all", "from": ["door", "badge"], "key": "$.data.deviceId", "windowS": 60}, "guest")
    table = TableDeriver(Specs(both=both), published, clock=clock)
    after_a1 = await feed(table, BOTH, [source("a1", "door", T0)])
    published.down = 3
    after_b1 = await table.step(BOTH, after_a1, source("b1", "badge", T0 + 1))
    assert (published.refused, len(published.events)) == (3, 1)
    assert KeyValue.loads(after_b1).applied == ("a1", "b1")


async def test_an_absence_deadline_is_ticked_once(table: TableDeriver, published: Published, clock: TestClock) -> None:
    armed = await feed(table, SILENT, [source("h1", "heartbeat", T0)])
    assert armed is not None and KeyValue.loads(armed).due_ms == T0 + FOR_S * 1000
    assert not table.due(SILENT, armed)
    assert await table.step(SILENT, armed, TICK) == armed  # an early tick changes nothing
    clock.jump(FOR_S)
    assert table.due(SILENT, armed)
    disarmed = await table.step(SILENT, armed, TICK)
    assert disarmed is not None and not table.due(SILENT, disarmed)
    assert KeyValue.loads(disarmed).state["armed"] is False
    assert await table.step(SILENT, disarmed, TICK) == disarmed  # a second tick (redelivered): nothing
    [event] = published.events
    assert (event.type, event.data["key"], event.data["silentSinceMs"], event.data["deadlineMs"]) == (
        "org.triggerhub.derived.absence", "dev-1", T0, T0 + FOR_S * 1000)

    # The crash case: the tick redelivered onto the armed value derives the same event id.
    await table.step(SILENT, armed, TICK)
    assert [e.id for e in published.events] == [event.id, event.id]


async def test_a_key_without_state_is_forgotten_after_its_applied_ids_age(
        table: TableDeriver, clock: TestClock) -> None:
    paired = await feed(table, BOTH, [source("a1", "door", T0), source("b1", "badge", T0 + 1)])
    assert paired is not None and not table.due(BOTH, paired)
    clock.jump(FORGET_AFTER_MS / 1000)
    assert table.due(BOTH, paired)
    assert await table.step(BOTH, paired, TICK) is None


async def test_applied_ids_are_bounded_and_unreadable_messages_change_nothing(table: TableDeriver) -> None:
    stored = await feed(table, SILENT, [source(f"h{i}", "heartbeat", T0 + i) for i in range(APPLIED_MAX + 5)])
    applied = KeyValue.loads(stored).applied
    assert len(applied) == APPLIED_MAX and applied[-1] == f"h{APPLIED_MAX + 4}"
    assert await table.step(SILENT, stored, b"not json") == stored
    assert KeyValue.loads(b"{broken") == KeyValue(None, None)


async def test_a_deleted_derived_trigger_drops_its_state(table: TableDeriver, published: Published) -> None:
    gone = table_key("/guest/gone", "dev-1")
    stored = await table.step(gone, None, source("h1", "heartbeat", T0))
    value: Any = KeyValue.loads(stored)
    assert (value.state, value.applied, published.events) == (None, ("h1",), [])
