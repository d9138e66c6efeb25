"""Sequence components: which records are read on a (re-)run, and that every component's record is
stored before the sequence's own record is returned (the writes overlap the next component's run)."""

from __future__ import annotations

import asyncio

import pytest

from triggerhub.engine.resolve import Resolved
from triggerhub.engine.sequences import component_id, run_sequence
from triggerhub.errors import StoreError
from triggerhub.model import (
    Action, Activation, ActivationResponse, Exec, FullyQualifiedName, Identity, Invocation, Kind,
)

COMPONENTS = tuple(f"/guest/step{i}" for i in range(5))
SEQUENCE = Action("guest", "seq5", Exec(Kind.SEQUENCE, components=COMPONENTS))


def invocation() -> Invocation:
    return Invocation(activation_id="s1", action=SEQUENCE, args={"n": 0}, namespace="guest", subject="guest",
                      accepted_ms=1000)


class Records:
    """The store seam: records by id; each complete() is slow, so a write overlaps what follows it."""

    def __init__(self, *, failing: str | None = None) -> None:
        self.stored: dict[str, Activation] = {}
        self.reads: list[str] = []
        self.failing = failing

    async def get_activation(self, namespace: str, activation_id: str) -> Activation | None:
        self.reads.append(activation_id)
        return self.stored.get(activation_id)

    async def complete(self, record: Activation) -> bool:
        await asyncio.sleep(0.01)
        if record.activation_id == self.failing:
            raise StoreError("the store is down")
        self.stored[record.activation_id] = record
        return True


class Steps:
    """Each step adds 1 to n; records which components ran and how many records were stored then."""

    def __init__(self, store: Records) -> None:
        self.ran: list[str] = []
        self.store = store
        self.stored_when_run: list[int] = []

    async def resolve(self, identity: Identity, fqn: FullyQualifiedName) -> Resolved:
        return Resolved(Action("guest", fqn.name, Exec(Kind.NODEJS_20, code="x")), f"guest/{fqn.name}", None, {})

    async def execute(self, child: Invocation) -> Activation:
        self.ran.append(child.action.name)
        self.stored_when_run.append(len(self.store.stored))
        return Activation("guest", child.action.name, "guest", child.activation_id, 1000, 1001,
                          ActivationResponse.ok({"n": child.args["n"] + 1}), cause=child.cause)


async def run(store: Records, steps: Steps) -> Activation:
    return await run_sequence(invocation(), topmost=True, resolve=steps.resolve, execute=steps.execute,
                              store=store, max_length=50)  # type: ignore[arg-type]


async def test_a_fresh_sequence_reads_one_record_and_stores_all_before_answering() -> None:
    store = Records()
    steps = Steps(store)
    record = await run(store, steps)
    ids = [component_id("s1", i) for i in range(5)]
    assert record.response.result == {"n": 5} and record.logs == tuple(ids)
    assert store.reads == [ids[0]]  # no record for the first: none after it has one
    assert sorted(store.stored) == sorted(ids)  # all stored when the sequence's record is returned
    assert steps.ran == [f"step{i}" for i in range(5)]
    assert steps.stored_when_run[-1] < 4  # the writes overlapped the next components' runs


async def test_a_rerun_after_a_crash_reuses_the_components_that_had_finished() -> None:
    store = Records()
    for i in range(2):
        done = Activation("guest", f"step{i}", "guest", component_id("s1", i), 900, 901,
                          ActivationResponse.ok({"n": i + 1}), cause="s1")
        store.stored[done.activation_id] = done
    steps = Steps(store)
    record = await run(store, steps)
    assert steps.ran == ["step2", "step3", "step4"]
    assert store.reads == [component_id("s1", i) for i in range(3)]
    assert record.response.result == {"n": 5}
    assert len(store.stored) == 5


async def test_a_component_record_that_cannot_be_stored_fails_the_sequence_with_its_error() -> None:
    store = Records(failing=component_id("s1", 1))
    with pytest.raises(StoreError, match="^the store is down$"):
        await run(store, Steps(store))
    assert component_id("s1", 1) not in store.stored
