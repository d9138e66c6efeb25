"""Derived triggers in the engine: the state steps an event causes, and the loop that derives.

`Deriver.steps(trigger, event)` gives the store one step per derived trigger the event's trigger
feeds; the store applies them in the transaction that accepts the event (store/derived.py), so
a crash leaves either the event with its state change or neither. Derived events go to an
outbox in that same transaction. The loop (`running`) then, over and over: applies `on_due` to
every key whose time has come (an absence deadline: the derived event goes to the outbox in the
transaction that disarms the key), and hands each outbox event to its derived trigger (`deliver`,
the engine's rule matching), whose acceptance deletes the outbox row. Between rounds it sleeps
until the nearest deadline in the store, or until an accept in this process derived an event or
armed an earlier deadline (`accepted`), or another process's did (`derive_changed`, from the
store's notices: distributed workers on PostgreSQL); with nothing due it looks again every
IDLE_S, for what a killed process left, or every `idle_s` (SHARED_IDLE_S in distributed workers)
while other processes' changes go unnoticed (no notices, or their connection is lost). A derived event's id comes
from its source events, so delivering it twice (a crash between accept and delete, two workers)
is refused by the event log. Any process may run the loop; distributed workers each run one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import TriggerhubError
from triggerhub.model import FullyQualifiedName, Trigger, TriggerEvent
from triggerhub.engine.entities import Entities
from triggerhub.rules import correlate
from triggerhub.rules.events import event_document
from triggerhub.store.base import DerivedChange, DeriveNotices, DeriveStep, Store

log = logging.getLogger(__name__)

IDLE_S = 30.0
"""Longest nap of the loop when every accept happens in its own process (the embedded hub): only
what a killed run of it left is found by looking. This process's accepts wake the loop."""
SHARED_IDLE_S = 2.0
"""Longest nap of a distributed worker's loop while it hears no notices (store/notify.py): the feeds
process and controllers accept feed and webhook events, arming deadlines and filling the outbox,
and only the notices wake it. With notices heard it naps up to IDLE_S. Only workers run
the loop, because a deadline is judged against the listening time of the process running it
(correlate.on_due), and only workers restart listening where fires queue up in Kafka."""
RETRY_S = 1.0  # after the store failed
BATCH = 500
DELIVER_AT_ONCE = 64
CACHE_MAX = 10_000

Deliver = Callable[[TriggerEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeriverStatistics:
    rounds: int  # looks at the store (expire due keys, deliver the outbox, read the next deadline)
    notices_live: bool  # another process's changes wake the loop (store notices heard)


@dataclass(frozen=True, slots=True)
class OnEvent:
    """The transition of one source event for one key (pure; run inside the store's transaction)."""

    spec: correlate.DeriveSpec
    trigger: FullyQualifiedName
    key: str
    source: correlate.SourceEvent

    def __call__(self, stored: str | None) -> DerivedChange:
        return _change(self.trigger, correlate.on_event(self.spec, str(self.trigger), self.key, _loads(stored),
                                                        self.source))


@dataclass(frozen=True, slots=True)
class OnDue:
    spec: correlate.DeriveSpec | None  # None: the derived trigger is gone; its state goes too
    trigger: FullyQualifiedName
    key: str
    now_ms: int
    listening_since_ms: int

    def __call__(self, stored: str | None) -> DerivedChange:
        if self.spec is None:
            return DerivedChange(None, None)
        return _change(self.trigger, correlate.on_due(self.spec, str(self.trigger), self.key, _loads(stored),
                                                      self.now_ms, listening_since_ms=self.listening_since_ms))


class Deriver:
    def __init__(self, store: Store, entities: Entities, *, clock: Clock = SYSTEM_CLOCK,
                 idle_s: float = IDLE_S, notices: DeriveNotices | None = None) -> None:
        """`idle_s`: the longest nap while other processes' changes go unnoticed; `notices`: the
        store's word of them (then the longest nap is IDLE_S while they come)."""
        self._store = store
        self._entities = entities
        self._clock = clock
        self._idle_s = idle_s
        self._notices = notices
        self._notices_live = False
        self._rounds = 0
        # (namespace, name, revision) of a derived trigger -> its spec and its sources' names
        self._specs: dict[tuple[str, str, int], tuple[correlate.DeriveSpec, frozenset[str]]] = {}
        self._names: dict[str, FullyQualifiedName] = {}
        self._wake = asyncio.Event()
        self._until_ms = 0  # when the loop's current nap ends (0: it is not napping)
        self._listening_since_ms = 0  # set when the loop starts (correlate.on_due)

    # ------------------------------------------------------------------ on the event path
    async def steps(self, trigger: Trigger, event: TriggerEvent) -> list[DeriveStep]:
        """One step per derived trigger fed by `trigger` whose key the event carries."""
        if not trigger.derived:
            return []
        document = event_document(event)
        source = correlate.SourceEvent(event.id, f"/{trigger.namespace}/{trigger.name}", event.time_ms,
                                       document.get("data"), heard_ms=self._clock.now_ms())
        steps: list[DeriveStep] = []
        for name in trigger.derived:
            fqn = self._fqn(name)
            found = self._spec(await self._entities.find(fqn, Trigger))
            if found is None or source.trigger not in found[1]:
                continue  # deleted, or no longer derived from this trigger (a stale link)
            spec = found[0]
            key = correlate.key_of(spec, document)
            if key is None:
                log.debug("event %s of %s has no key at %s for derived trigger %s", event.id, trigger.fqn,
                          spec.to_json()["key"], name)
                continue
            steps.append(DeriveStep(name, key, OnEvent(spec, fqn, key, source)))
        return steps

    def accepted(self, steps: Sequence[DeriveStep]) -> None:
        """After an accept: wake the loop when a step may have derived an event right away (`all`,
        `sequence`), or armed an absence deadline before the end of the loop's nap. An absence
        step arms no deadline earlier than the event was heard plus forS (correlate._heard)."""
        for step in steps:
            transition = step.transition
            if not isinstance(transition, OnEvent):
                continue
            # Not napping (0): the round under way may have read the next deadline before this
            # accept committed, so it looks again.
            if transition.spec.kind is not correlate.DeriveKind.ABSENCE or self._until_ms == 0 or (
                    transition.source.heard_ms + transition.spec.window_ms < self._until_ms):
                self._wake.set()
                return

    def relisten(self) -> None:
        """The events of the sources may have been held up until now (this process was given
        other Kafka partitions, or took over a dead worker's): every absence deadline is then no
        earlier than forS from now (correlate.on_due). The loop looks at once: another worker's
        keys and outbox rows may be this one's to see to now."""
        self._listening_since_ms = self._clock.now_ms()
        self._wake.set()

    @property
    def listening_since_ms(self) -> int:
        return self._listening_since_ms

    def derive_changed(self, due_ms: int) -> None:
        """Another process armed a deadline at `due_ms` (0: derived an event): wake the loop when
        that is before the end of its nap, or when it is not napping (its round may have read the
        store before that change committed)."""
        if self._until_ms == 0 or due_ms < self._until_ms:
            self._wake.set()

    def derive_notices_live(self, live: bool) -> None:
        """Notices started (look now: what was committed before went unheard) or stopped (nap
        shorter from now on)."""
        if live != self._notices_live:
            log.info("derived triggers: other processes' changes %s", "are heard" if live else
                     f"go unheard: looking every {self._idle_s:g} s")
        self._notices_live = live
        self._wake.set()

    def statistics(self) -> DeriverStatistics:
        return DeriverStatistics(rounds=self._rounds, notices_live=self._notices_live)

    async def find_spec(self, name: str) -> tuple[FullyQualifiedName, correlate.DeriveSpec | None]:
        """A derived trigger's name and its declaration (None: it is gone or derives no more)."""
        fqn = self._fqn(name)
        found = self._spec(await self._entities.find(fqn, Trigger))
        return fqn, None if found is None else found[0]

    # ------------------------------------------------------------------ the loop
    @contextlib.asynccontextmanager
    async def running(self, deliver: Deliver) -> AsyncIterator[None]:
        self.relisten()
        async with contextlib.AsyncExitStack() as stack:
            if self._notices is not None:
                await stack.enter_async_context(self._notices.listen(self))
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            serving = tasks.create_task(self._serve(deliver))
            try:
                yield
            finally:
                serving.cancel()

    async def run_once(self, deliver: Deliver) -> int | None:
        """Expire every due key, deliver every outbox event; the next due time (ms) or None."""
        while await self._expire_due() == BATCH:
            pass
        while await self._deliver_outbox(deliver) == BATCH:
            pass
        return await self._store.next_derived_due_ms()

    async def _serve(self, deliver: Deliver) -> None:
        while True:
            self._wake.clear()
            self._rounds += 1
            try:
                next_due_ms = await self.run_once(deliver)
            except TriggerhubError as exc:  # the store or bus is down: try again after a nap
                log.warning("derived triggers: %s; retrying in %.1f s", exc, RETRY_S)
                next_due_ms = self._clock.now_ms() + round(RETRY_S * 1000)
            idle_s = max(self._idle_s, IDLE_S) if self._notices_live else self._idle_s
            until_ms = self._clock.now_ms() + round(idle_s * 1000)
            if next_due_ms is not None:  # to the deadline itself, not a relative wait that rounds
                until_ms = min(until_ms, next_due_ms)
            self._until_ms = until_ms
            try:
                await self._nap(until_ms / 1000)
            finally:
                self._until_ms = 0

    async def _nap(self, until_s: float) -> None:
        """Until `until_s` on the clock, or until an accept derived an event (`accepted`)."""
        async with asyncio.TaskGroup() as tasks:
            waiters = [tasks.create_task(self._clock.sleep_until(until_s)), tasks.create_task(self._wake.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _expire_due(self) -> int:
        now_ms = self._clock.now_ms()
        due = await self._store.list_due_derived(now_ms, limit=BATCH)
        if not due:
            return 0
        specs: dict[str, correlate.DeriveSpec | None] = {}
        for name, _ in due:
            if name not in specs:
                found = self._spec(await self._entities.find(self._fqn(name), Trigger))
                specs[name] = None if found is None else found[0]
        await self._store.change_derived([
            DeriveStep(name, key, OnDue(specs[name], self._fqn(name), key, now_ms, self._listening_since_ms))
            for name, key in due])
        return len(due)

    async def _deliver_outbox(self, deliver: Deliver) -> int:
        """Each waiting derived event to its trigger, DELIVER_AT_ONCE at a time (the store commits
        their acceptances together); they are independent of one another."""
        events = await self._store.list_derived_outbox(limit=BATCH)
        delivered = 0
        for start in range(0, len(events), DELIVER_AT_ONCE):
            async with asyncio.TaskGroup() as tasks:
                batch = [tasks.create_task(self._deliver_one(deliver, e)) for e in events[start:start + DELIVER_AT_ONCE]]
            delivered += sum(task.result() for task in batch)
        return delivered  # fewer than BATCH: run_once waits for the next round

    @staticmethod
    async def _deliver_one(deliver: Deliver, event: TriggerEvent) -> bool:
        try:
            await deliver(event)
        except TriggerhubError as exc:  # its outbox row stays: delivered in a later round
            log.warning("derived event %s of %s not delivered yet: %s", event.id, event.trigger, exc)
            return False
        return True

    def _fqn(self, name: str) -> FullyQualifiedName:
        fqn = self._names.get(name)
        if fqn is None:
            if len(self._names) > CACHE_MAX:
                self._names.clear()
            fqn = self._names[name] = FullyQualifiedName.parse(name, "_")
        return fqn

    def _spec(self, trigger: Trigger | None) -> tuple[correlate.DeriveSpec, frozenset[str]] | None:
        """A derived trigger's parsed declaration and its sources' names (cached per revision)."""
        if trigger is None or trigger.derive is None:
            return None
        cache_key = (trigger.namespace, trigger.name, trigger.revision)
        found = self._specs.get(cache_key)
        if found is None:
            try:
                spec = correlate.parse_spec(trigger.derive, trigger.namespace)
            except correlate.DeriveError as exc:  # written by a newer hub, or edited by hand
                log.error("derived trigger %s: stored derive is not usable: %s", trigger.fqn, exc)
                return None
            if len(self._specs) > CACHE_MAX:
                self._specs.clear()
            found = self._specs[cache_key] = (spec, frozenset(str(s) for s in spec.sources))
        return found


def derived_event(trigger: FullyQualifiedName, derived: correlate.Derived) -> TriggerEvent:
    """The CloudEvent of a derived event on its derived trigger."""
    return TriggerEvent(id=derived.id, source=f"/api/v1/namespaces/{trigger.namespace}/triggers/{trigger.name}",
                        type=f"{correlate.DERIVED_EVENT_TYPE}.{derived.data['kind']}", trigger=trigger,
                        data=derived.data, time_ms=derived.time_ms)


def _change(trigger: FullyQualifiedName, transition: correlate.Transition) -> DerivedChange:
    state = None if transition.state is None else json.dumps(transition.state, separators=(",", ":"))
    return DerivedChange(state, transition.due_ms, tuple(derived_event(trigger, d) for d in transition.derived))


def _loads(stored: str | None) -> dict[str, Any] | None:
    if not stored:
        return None
    try:
        value = json.loads(stored)
    except ValueError:  # never refuse an event over a broken row: the key starts afresh
        log.error("derived trigger state %r is not JSON; dropped", stored[:80])
        return None
    return value if isinstance(value, dict) else None


__all__ = ["BATCH", "IDLE_S", "SHARED_IDLE_S", "Deliver", "Deriver", "DeriverStatistics", "OnDue", "OnEvent",
           "derived_event"]
