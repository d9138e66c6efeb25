"""Distributed mode's engine side: the Kafka dispatcher and the controller, worker and invoker loops.

controller: fires -> `trigger-events` (keyed by event id, or by an ordering key: ordering.py); invocations -> `invocations` (keyed by
            activation id); blocking callers wait on `completed<N>` (CompletionWaiter).
worker:     `trigger-events` -> engine.emit (rule matching, store.accept) -> `invocations`.
invoker:    `invocations` -> run -> store.complete -> `completed<N>`; heartbeats on `health`.
No loss: a message's offset is committed only after its handler returned, and handlers return
only once their effect is stored and published; a redelivered invocation finds its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Protocol

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import ApiError, BusError, TriggerhubError
from triggerhub.model import Activation, Invocation, Kind, TriggerEvent, now_ms
from triggerhub.bus import codec as wire
from triggerhub.bus.topics import Topics
from triggerhub.engine.dispatch import Finished, MatchHere
from triggerhub.engine.recording import Execute, RecordRetry, run_to_record
from triggerhub.store import codec
from triggerhub.store.base import Acceptance, Store
from triggerhub.retry import retrying

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, topic: str, key: str, value: bytes) -> None: ...

    async def enqueue(self, topic: str, key: str, value: bytes) -> Awaitable[None]:
        """Queue a record; the result, awaited, confirms it (in queueing order per partition)."""


# ---------------------------------------------------------------------------- messages


def invocation_message(invocation: Invocation, reply_to: str | None) -> bytes:
    return wire.encode({"invocation": codec.invocation_to_doc(invocation), "reply_to": reply_to})


def read_invocation(raw: bytes, topic: str) -> tuple[Invocation, str | None]:
    doc = wire.decode(raw, topic)
    try:
        return codec.invocation_from_doc(doc["invocation"]), doc.get("reply_to")
    except (KeyError, TypeError, ValueError) as exc:
        raise BusError(f"malformed invocation on topic {topic!r}: {exc!r}") from exc


def completion_message(record: Activation) -> bytes:
    return wire.encode({"activation": codec.activation_to_doc(record)})


def read_completion(raw: bytes, topic: str) -> Activation:
    doc = wire.decode(raw, topic)
    try:
        return codec.activation_from_doc(doc["activation"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BusError(f"malformed completion on topic {topic!r}: {exc!r}") from exc


def event_message(event: TriggerEvent) -> bytes:
    return wire.encode(codec.event_to_doc(event))


def read_event(raw: bytes, topic: str) -> TriggerEvent:
    doc = wire.decode(raw, topic)
    try:
        return codec.event_from_doc(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise BusError(f"malformed trigger event on topic {topic!r}: {exc!r}") from exc


# ---------------------------------------------------------------------------- controller side


class CompletionWaiter:
    """The blocking callers of one controller, each waiting for its activation id."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Activation]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, activation_id: str) -> asyncio.Future[Activation]:
        future = self._waiting.get(activation_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[activation_id] = future
        return future

    def forget(self, activation_id: str) -> None:
        self._waiting.pop(activation_id, None)

    async def on_message(self, topic: str, key: str, value: bytes) -> None:
        try:
            record = read_completion(value, topic)
        except BusError as exc:
            log.error("%s; skipped", exc)
            return
        future = self._waiting.get(record.activation_id)
        if future is not None and not future.done():
            future.set_result(record)


@dataclass(frozen=True, slots=True)
class KafkaStatistics:
    published: int  # invocations handed to Kafka by this process
    waiting: int  # blocking callers waiting for a completion (controller)

    def to_json(self) -> dict[str, int]:
        return {"published": self.published, "waiting": self.waiting}


class KafkaDispatcher:
    """The engine's Dispatcher in distributed mode: accept in the store, then publish. Nothing
    runs here (invokers run what is published); a fire's event goes to the workers' topic.

    `reply_to` names this controller's completions topic; without one (worker, invoker) the
    process cannot run blocking invokes."""

    def __init__(self, store: Store, publisher: Publisher, topics: Topics, *,
                 waiter: CompletionWaiter | None = None, reply_to: str | None = None) -> None:
        self._store = store
        self._publisher = publisher
        self._topics = topics
        self._finished: Finished = _not_started
        self._waiter = waiter
        self._reply_to = reply_to
        self._published = 0
        # Accepted in the store but not taken by Kafka (a failed publish): the RepublishSweep
        # (engine/republish.py) publishes them again until Kafka takes them.
        self._unpublished: dict[str, Invocation] = {}

    @contextlib.asynccontextmanager
    async def running(self, *, execute: Execute, finished: Finished) -> AsyncIterator[None]:
        """`execute` is not used: invokers run the invocations this dispatcher publishes."""
        self._finished = finished
        try:
            yield
        finally:
            self._finished = _not_started

    def statistics(self) -> KafkaStatistics:
        return KafkaStatistics(published=self._published, waiting=len(self._waiter) if self._waiter else 0)

    def unpublished(self) -> list[Invocation]:
        """Invocations the store accepted whose publish failed, oldest failure first."""
        return list(self._unpublished.values())

    async def republish(self, invocation: Invocation) -> None:
        """Publish a stored invocation again (BusError when Kafka still refuses). Invocations are
        keyed by activation id, so every copy lands on one partition and one invoker, which runs
        the first and skips the rest (its record exists, or it is still running it)."""
        await self._publish(invocation, None, None)

    async def fire(self, event: TriggerEvent, match_here: MatchHere, *, key: str) -> bool:
        """Accepted once Kafka holds the event; a worker matches it (events of one key in order)."""
        await self._publisher.publish(self._topics.trigger_events, key, event_message(event))
        return True

    async def submit(self, acceptance: Acceptance, invocations: Sequence[Invocation], *,
                     confirmations: list[Awaitable[None]] | None = None) -> bool:
        accepted = await self._store.accept(acceptance)
        # A duplicate event may come from a worker that died after accepting and before
        # publishing: publish again. Ids are derived from the event, and an invoker skips an
        # invocation that has a record, so a second copy runs nothing twice.
        if accepted or acceptance.event is not None:
            await self._publish_all(invocations, confirmations)
        if accepted:
            for invocation in invocations:
                self._finished(invocation)  # held up to the hand-over: see dispatch.Finished
        return accepted

    async def run_blocking(self, invocation: Invocation, wait_ms: int) -> Activation | None:
        if self._waiter is None or self._reply_to is None:
            raise TriggerhubError("blocking invokes are answered by a controller; this process has no completions topic")
        future = self._waiter.expect(invocation.activation_id)
        try:
            await self._publish(invocation, self._reply_to, None)
            async with asyncio.timeout(wait_ms / 1000):
                return await future
        except TimeoutError:
            log.debug("activation %s of %s: no completion within %d ms; answering 202",
                     invocation.activation_id, invocation.path_annotation, wait_ms)
            return None
        finally:
            self._waiter.forget(invocation.activation_id)
            self._finished(invocation)

    async def _publish_all(self, invocations: Sequence[Invocation], confirmations: list[Awaitable[None]] | None) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                for invocation in invocations:
                    tasks.create_task(self._publish(invocation, None, confirmations))
        except ExceptionGroup as failed:  # callers handle one BusError, as from a single publish
            raise failed.exceptions[0] from None

    async def _publish(self, invocation: Invocation, reply_to: str | None,
                       confirmations: list[Awaitable[None]] | None) -> None:
        builtin = invocation.action.exec.kind == Kind.BUILTIN
        topic = self._topics.feed_invocations if builtin else self._topics.invocations
        message = invocation_message(invocation, reply_to)
        if confirmations is not None:  # a worker's batch: it is handled again when one is not confirmed
            confirmations.append(await self._publisher.enqueue(topic, invocation.activation_id, message))
        else:
            try:
                await self._publisher.publish(topic, invocation.activation_id, message)
            except BusError:
                if reply_to is None:  # stored (blocking invokes are not): left for the sweep
                    self._unpublished[invocation.activation_id] = invocation
                raise
            self._unpublished.pop(invocation.activation_id, None)
        self._published += 1


def _not_started(invocation: Invocation) -> None:
    raise TriggerhubError("the dispatcher is not running; use `async with engine:`")


@dataclass(frozen=True, slots=True)
class InvokerStatistics:
    """What an invoker reports in its heartbeats."""

    ran: int = 0  # invocations run to a record here
    skipped: int = 0  # redelivered invocations that had a record already
    running: int = 0
    partitions: int = 0  # invocation partitions assigned to this invoker

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> InvokerStatistics:
        """Known counters only (a newer invoker may report more)."""
        return cls(**{f.name: int(str(doc[f.name])) for f in fields(cls) if f.name in doc})


@dataclass(frozen=True, slots=True)
class InvokerHealth:
    last_seen_ms: int
    statistics: InvokerStatistics = InvokerStatistics()


class HealthMonitor:
    """Invoker states from heartbeats: `up` while one arrived within `healthy_timeout_ms`."""

    def __init__(self, healthy_timeout_ms: int, clock: Clock = SYSTEM_CLOCK) -> None:
        self._timeout_ms = healthy_timeout_ms
        self._clock = clock
        self._invokers: dict[str, InvokerHealth] = {}

    async def on_message(self, topic: str, key: str, value: bytes) -> None:
        try:
            doc = wire.decode(value, topic)
            name, sent_ms = str(doc["invoker"]), int(doc["ts_ms"])
            statistics = InvokerStatistics.from_json(dict(doc.get("statistics", {})))
        except (BusError, KeyError, TypeError, ValueError) as exc:
            log.error("malformed heartbeat on %s: %s; skipped", topic, exc)
            return
        known = self._invokers.get(name)
        if known is None or sent_ms >= known.last_seen_ms:
            if known is None or sent_ms - known.last_seen_ms > self._timeout_ms:
                log.info("invoker %s is up", name)
            self._invokers[name] = InvokerHealth(sent_ms, statistics)

    def states(self) -> dict[str, str]:
        now = self._clock.now_ms()
        ordered = sorted(self._invokers.items(), key=lambda item: _invoker_order(item[0]))
        return {name: "up" if now - seen.last_seen_ms <= self._timeout_ms else "down" for name, seen in ordered}

    def healthy_count(self) -> str:
        states = self.states()
        return f"{sum(1 for s in states.values() if s == 'up')}/{len(states)}"

    def statistics(self) -> dict[str, InvokerStatistics]:
        """Each invoker's last reported statistics, in invoker order."""
        return {name: seen.statistics for name, seen in sorted(self._invokers.items(),
                                                               key=lambda item: _invoker_order(item[0]))}


def _invoker_order(name: str) -> tuple[int, str]:
    digits = name.removeprefix("invoker")
    return (int(digits), name) if digits.isdigit() else (1 << 30, name)


# ---------------------------------------------------------------------------- worker


class Emit(Protocol):
    """`Engine.emit`: match an event and accept it durably (confirmations: as for Dispatcher.submit)."""

    async def __call__(self, event: TriggerEvent, *, confirmations: list[Awaitable[None]] | None = None) -> bool: ...


class WorkerService:
    """Handles trigger events: match rules, accept durably, publish the invocations."""

    def __init__(self, emit: Emit, topic: str, *, revalidate: Callable[[], Awaitable[None]] | None = None) -> None:
        """`revalidate` runs before each batch (the entity cache's check against the store)."""
        self._emit = emit
        self._topic = topic
        self._revalidate = revalidate
        self.handled = 0

    async def handle_batch(self, messages: list[tuple[str, bytes]]) -> None:
        """Returns once every event is accepted and its invocations confirmed by Kafka. The
        invocations are queued without waiting for each confirmation; if one fails, the whole
        batch is handled again (accepted events are then duplicates whose invocations are
        published again, which invokers run at most once)."""
        async def handle_confirmed() -> None:
            confirmations: list[Awaitable[None]] = []
            if self._revalidate is not None:
                await self._revalidate()
            await self._handle_grouped(messages, confirmations)
            for confirmation in confirmations:
                await confirmation

        await retrying(f"handling a batch of {len(messages)} events", handle_confirmed)

    async def _handle_grouped(self, messages: list[tuple[str, bytes]], confirmations: list[Awaitable[None]]) -> None:
        """Keys in parallel, each key's events one after another in topic order. A fire's key is
        its event id unless its trigger has an ordering key (engine/ordering.py), so a batch of
        one hot trigger's events is matched concurrently (at most a batch at a time)."""
        by_key: dict[str, list[bytes]] = {}
        for key, value in messages:
            by_key.setdefault(key, []).append(value)

        async def in_order(key: str, values: list[bytes]) -> None:
            for value in values:
                await self.handle(key, value, confirmations=confirmations)

        async with asyncio.TaskGroup() as tasks:
            for key, values in by_key.items():
                tasks.create_task(in_order(key, values))

    async def handle(self, key: str, value: bytes, *, confirmations: list[Awaitable[None]] | None = None) -> None:
        """Match one event; with `confirmations`, as for `Dispatcher.submit`."""
        try:
            event = read_event(value, self._topic)
        except BusError as exc:
            log.error("%s; skipped", exc)
            return
        try:
            await retrying(f"matching event {event.id} of trigger {event.trigger}", lambda: self._emit(event, confirmations=confirmations))
        except ApiError as exc:
            log.warning("event %s of trigger %s dropped: %s", event.id, event.trigger, exc.message)
        self.handled += 1


# ---------------------------------------------------------------------------- invoker


class InvokerService:
    """Runs invocations from Kafka, each to exactly one stored record, and answers blocking callers."""

    def __init__(self, name: str, store: Store, execute: Callable[[Invocation], Awaitable[Activation]],
                 publisher: Publisher, topic: str, *, record_retry: RecordRetry = RecordRetry()) -> None:
        self.name = name
        self._record_retry = record_retry
        self._store = store
        self._execute = execute
        self._publisher = publisher
        self._topic = topic
        self._running: dict[str, asyncio.Future[Activation]] = {}
        self._counts = {"ran": 0, "skipped": 0}

    def statistics(self) -> InvokerStatistics:
        return InvokerStatistics(ran=self._counts["ran"], skipped=self._counts["skipped"], running=len(self._running))

    async def handle(self, key: str, value: bytes) -> None:
        try:
            invocation, reply_to = read_invocation(value, self._topic)
        except BusError as exc:
            log.error("%s; skipped", exc)
            return
        record = await self._record_for(invocation)
        if reply_to:
            await retrying(f"answering activation {record.activation_id}",
                           lambda: self._publisher.publish(reply_to, record.activation_id, completion_message(record)))

    async def _record_for(self, invocation: Invocation) -> Activation:
        activation_id = invocation.activation_id
        running = self._running.get(activation_id)
        if running is not None:  # redelivered to us while we still run it (a rebalance)
            return await asyncio.shield(running)
        existing = await retrying(f"looking up activation {activation_id}",
                                  lambda: self._store.get_activation(invocation.namespace, activation_id))
        if existing is not None:
            self._counts["skipped"] += 1
            log.debug("activation %s was recorded before; not run again", activation_id)
            # A copy of a recorded activation may come with a pending row nobody else drops: a
            # retry started a second time (kept again by a duplicate settle of the attempt before
            # it, or re-claimed after its claimer died) is made pending again when its attempt's
            # record commits during prepare_retry (store/deliveries.py).
            if await retrying(f"dropping the pending row of recorded activation {activation_id}",
                              lambda: self._store.delete_pending(activation_id)):
                log.info("activation %s: pending row left beside its record dropped", activation_id)
            return existing
        future: asyncio.Future[Activation] = asyncio.get_running_loop().create_future()
        self._running[activation_id] = future
        try:
            record = await self._run(invocation)
            future.set_result(record)
            return record
        except BaseException:
            future.cancel()  # a redelivered copy waiting on us runs it afresh after its retry
            raise
        finally:
            self._running.pop(activation_id, None)

    async def _run(self, invocation: Invocation) -> Activation:
        """To one stored record (recording.run_to_record); the message is acked only after that."""
        log.debug("activation %s of %s starting on %s", invocation.activation_id, invocation.path_annotation, self.name)
        record = await run_to_record(invocation, execute=self._execute, store=self._store, where=self.name,
                                     retry=self._record_retry)
        self._counts["ran"] += 1
        return record


async def heartbeat(name: str, publisher: Publisher, topic: str, interval_ms: int,
                    statistics: Callable[[], InvokerStatistics], stop: asyncio.Event) -> None:
    """Publish `{"invoker", "ts_ms", "statistics"}` every `interval_ms` until `stop` is set."""
    while not stop.is_set():
        doc = {"invoker": name, "ts_ms": now_ms(), "statistics": statistics().to_json()}
        try:
            await publisher.publish(topic, name, wire.encode(doc))
        except BusError as exc:
            log.warning("heartbeat of %s not sent: %s", name, exc)
        try:
            async with asyncio.timeout(interval_ms / 1000):
                await stop.wait()
        except TimeoutError:
            pass


class NoLocalRuns:
    """The Invoker of processes that never run actions (controller, worker)."""

    async def invoke(self, invocation: Invocation) -> Activation:
        raise TriggerhubError(f"activation {invocation.activation_id}: this process does not run actions; "
                              "invokers do (`triggerhub invoker --id N`)")
