"""A distributed worker's batch of trigger events: every key at once, each key's events in topic
order, after one revalidation of the entity cache (a fake `emit` at the engine seam)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from triggerhub.engine.distributed import WorkerService, event_message
from triggerhub.model import FullyQualifiedName, TriggerEvent

TOPIC = "trigger-events"


def message(key: str, event_id: str) -> tuple[str, bytes]:
    event = TriggerEvent(id=event_id, source="/api", type="fire", trigger=FullyQualifiedName("guest", "hot"), data={})
    return key, event_message(event)


class GatedEmit:
    """Records when each event starts and ends; each one ends only once the test opens its gate."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, event: TriggerEvent, *, confirmations: list[Awaitable[None]] | None = None) -> bool:
        self.log.append(f"start {event.id}")
        await self.gates.setdefault(event.id, asyncio.Event()).wait()
        self.log.append(f"end {event.id}")
        return True

    def open(self, event_id: str) -> None:
        self.gates.setdefault(event_id, asyncio.Event()).set()


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until `condition` holds (no clock involved)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_keys_run_at_once_and_one_keys_events_one_after_another() -> None:
    log: list[str] = []
    emit = GatedEmit(log)

    async def revalidate() -> None:
        log.append("revalidate")

    worker = WorkerService(emit, TOPIC, revalidate=revalidate)
    batch = [message("/guest/hot#\"a\"", "a1"), message("e-b1", "b1"), message("/guest/hot#\"a\"", "a2"),
             message("e-c1", "c1")]
    handling = asyncio.create_task(worker.handle_batch(batch))

    await until(lambda: len(log) == 4)
    assert log == ["revalidate", "start a1", "start b1", "start c1"]  # a2 waits for a1, the rest run at once
    emit.open("b1")
    emit.open("c1")
    await until(lambda: len(log) == 6)
    assert "start a2" not in log
    emit.open("a1")
    await until(lambda: "start a2" in log)
    assert log[6:] == ["end a1", "start a2"]
    emit.open("a2")
    await handling
    assert log[-1] == "end a2"
    assert worker.handled == 4
