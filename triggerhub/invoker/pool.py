"""The container pool: which runtime runs which invocation (reference/openwhisk.md 6.1).

Runtime-agnostic (any RuntimeFactory). Warm runtimes are reused only for the same invoking
namespace and the same action revision; prewarmed stem cells serve first invokes (started with
the pool, or for a kind only once it was first used); idle runtimes are paused after a grace and
removed after a timeout by `reap(now_s)`; the memory budget is kept by evicting the least recently
used idle runtimes; when nothing fits, callers wait FIFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.base import Runtime, RuntimeFactory, RuntimeSpec
from triggerhub.model import HUB_KINDS, Action, annotation
from triggerhub.observe import metrics

logger = logging.getLogger(__name__)

NETWORK_ANNOTATION = "sandbox-network"  # `sandbox-network: true` gives an action the network


@dataclass(frozen=True, slots=True)
class PrewarmConfig:
    """Keep `count` stem cells (started, not initialised) of `kind` with `memory_mb`."""

    kind: str
    count: int
    memory_mb: int = 256


@dataclass(frozen=True, slots=True)
class PoolConfig:
    prewarm_count: int = 0  # stem cells kept for each kind in prewarm_kinds
    prewarm_kinds: tuple[str, ...] = HUB_KINDS
    # False: a kind's stem cells start only after its first lease (that one is a cold start), so an
    # idle pool holds no runtime of a kind nobody uses; after a rest, kinds count as unused again.
    prewarm_at_start: bool = True
    prewarm_memory_mb: int = 256
    pause_grace_s: float = 10.0
    idle_timeout_s: float = 600.0
    memory_budget_mb: int = 1024  # for action runtimes; stem cells do not count (as in OpenWhisk)
    network: bool = False  # RuntimeSpec.network for every action runtime; else only for annotated actions

    @property
    def stem_cells(self) -> tuple[PrewarmConfig, ...]:
        return tuple(PrewarmConfig(kind, self.prewarm_count, self.prewarm_memory_mb)
                     for kind in self.prewarm_kinds if self.prewarm_count > 0)


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    warm: int  # initialised for an action, idle and not paused
    prewarm: int
    busy: int
    paused: int
    waiting: int
    starting: int
    memory_used_mb: int
    memory_budget_mb: int


@dataclass(frozen=True, slots=True)
class WarmKey:
    """What a warm runtime may be reused for: never across namespaces or action revisions."""

    namespace: str
    action: str
    revision: int
    version: str
    updated_ms: int

    @classmethod
    def of(cls, namespace: str, action: Action) -> WarmKey:
        return cls(namespace, str(action.fqn), action.revision, action.version, action.updated_ms)


class SlotState(StrEnum):
    STARTING = "starting"
    PREWARM = "prewarm"
    IDLE = "idle"
    BUSY = "busy"
    PAUSING = "pausing"
    PAUSED = "paused"


@dataclass(slots=True, eq=False)
class _Slot:
    spec: RuntimeSpec
    state: SlotState
    key: WarmKey | None  # None: a stem cell, not yet given to an action
    last_used_s: float
    runtime: Runtime | None = None
    initialized: bool = False


@dataclass(slots=True, eq=False)
class _Claim:
    slot: _Slot
    resume: bool = False
    evicted: list[_Slot] = field(default_factory=list)


class Lease:
    """One runtime lent to one activation. `needs_init` is True on a cold or prewarm start."""

    def __init__(self, pool: ContainerPool, slot: _Slot, runtime: Runtime) -> None:
        self._pool = pool
        self._slot = slot
        self.runtime = runtime
        self.needs_init = not slot.initialized
        self.destroyed = False

    def mark_initialized(self) -> None:
        self._slot.initialized = True

    async def destroy(self) -> None:
        """Remove the runtime now (failed init, timeout, crash); it will not be reused."""
        if not self.destroyed:
            self.destroyed = True
            await self._pool._remove(self._slot)


def wants_network(action: Action) -> bool:
    """True when the action is annotated `sandbox-network: true` (a JSON true or "true")."""
    value = annotation(action.annotations, NETWORK_ANNOTATION, False)
    return value is True or (isinstance(value, str) and value.lower() == "true")


class ContainerPool:
    def __init__(self, factory: RuntimeFactory, config: PoolConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._factory = factory
        self._config = config
        self._clock = clock
        self._slots: list[_Slot] = []
        self._waiters: deque[asyncio.Event] = deque()
        self._refill_needed = asyncio.Event()
        self._closed = False
        # When nothing was leased for idle_timeout_s, the stem cells are stopped too (the pool
        # "rests"), so an idle hub's RSS falls to the hub's own; the next lease refills them.
        self._last_lease_s = clock.monotonic_s()
        self._resting = False
        self._used_kinds: set[str] = set(config.prewarm_kinds) if config.prewarm_at_start else set()

    # ------------------------------------------------------------------ public

    @contextlib.asynccontextmanager
    async def lease(self, namespace: str, action: Action) -> AsyncIterator[Lease]:
        """Lend a runtime for one activation; it goes back to the pool (or is destroyed if the
        body raised or called `lease.destroy()`)."""
        slot = await self._acquire(WarmKey.of(namespace, action), self.spec_for(namespace, action))
        assert slot.runtime is not None  # _acquire returns started runtimes only
        lease = Lease(self, slot, slot.runtime)
        try:
            yield lease
        except BaseException:
            await lease.destroy()
            raise
        if not lease.destroyed:
            self._release(slot)

    def spec_for(self, namespace: str, action: Action) -> RuntimeSpec:
        return RuntimeSpec(kind=action.exec.kind, memory_mb=action.limits.memory_mb, image=action.exec.image,
                           network=self._config.network or wants_network(action),
                           labels={"triggerhub.namespace": namespace, "triggerhub.action": str(action.fqn)})

    async def start(self) -> None:
        """Create the configured stem cells (of the kinds already used, unless `prewarm_at_start`)."""
        await self.fill_prewarm()

    async def fill_prewarm(self) -> None:
        """Start stem cells until every configured (kind, memory) has its count (none while resting)."""
        if self._resting:
            return
        missing = [RuntimeSpec(kind=p.kind, memory_mb=p.memory_mb, network=self._config.network)
                   for p in self._config.stem_cells if p.kind in self._used_kinds
                   for _ in range(p.count - self._count_prewarm(p))]
        if missing and not self._closed:
            async with asyncio.TaskGroup() as tg:
                for spec in missing:
                    tg.create_task(self._start_prewarm(spec))

    async def reap(self, now_s: float | None = None) -> None:
        """Pause runtimes idle for pause_grace_s, remove those unused for idle_timeout_s, refill
        stem cells; when nothing was leased for idle_timeout_s, remove the stem cells too until
        the next lease. Driven by the owner's periodic task (see `maintain`) or by tests."""
        now_s = self._clock.monotonic_s() if now_s is None else now_s
        expired = [s for s in self._slots if s.state in (SlotState.IDLE, SlotState.PAUSED)
                   and now_s - s.last_used_s >= self._config.idle_timeout_s]
        if not self._resting and now_s - self._last_lease_s >= self._config.idle_timeout_s:
            self._resting = True
            if not self._config.prewarm_at_start:
                self._used_kinds.clear()
            expired += [s for s in self._slots if s.state is SlotState.PREWARM]
        to_pause = [s for s in self._slots if s.state is SlotState.IDLE
                    and now_s - s.last_used_s >= self._config.pause_grace_s and s not in expired]
        for slot in to_pause:
            slot.state = SlotState.PAUSING
        for slot in expired:  # out of the pool now, before any other task can claim them
            self._slots.remove(slot)
        async with asyncio.TaskGroup() as tg:
            for slot in expired:
                tg.create_task(self._remove(slot))
            for slot in to_pause:
                tg.create_task(self._pause(slot))
        await self.fill_prewarm()

    async def maintain(self, interval_s: float = 1.0) -> None:
        """Run reap() every `interval_s` and as soon as a stem cell was used, until close()."""
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._refill_needed.wait()
            self._refill_needed.clear()
            await self.reap(self._clock.monotonic_s())

    def statistics(self) -> PoolStatistics:
        count = {state: 0 for state in SlotState}
        for slot in self._slots:
            count[slot.state] += 1
        return PoolStatistics(
            warm=count[SlotState.IDLE], prewarm=count[SlotState.PREWARM], busy=count[SlotState.BUSY],
            paused=count[SlotState.PAUSED] + count[SlotState.PAUSING], waiting=len(self._waiters),
            starting=count[SlotState.STARTING], memory_used_mb=self._memory_used_mb(),
            memory_budget_mb=self._config.memory_budget_mb)

    async def close(self) -> None:
        """Destroy every runtime; waiting and later callers get ActionRuntimeError."""
        self._closed = True
        for event in self._waiters:
            event.set()
        async with asyncio.TaskGroup() as tg:
            for slot in list(self._slots):
                tg.create_task(self._remove(slot))

    # ------------------------------------------------------------------ acquire / release

    async def _acquire(self, key: WarmKey, spec: RuntimeSpec) -> _Slot:
        if spec.memory_mb > self._config.memory_budget_mb:
            raise ActionRuntimeError(f"action {key.action} needs {spec.memory_mb} MB, more than the pool's whole "
                                     f"budget of {self._config.memory_budget_mb} MB; lower its memory limit")
        self._check_open()
        self._last_lease_s = self._clock.monotonic_s()
        if self._resting:  # the first lease after a rest: stem cells again from now on
            self._resting = False
            self._refill_needed.set()
        if spec.kind not in self._used_kinds:  # this kind's stem cells from now on (this lease is cold)
            self._used_kinds.add(spec.kind)
            self._refill_needed.set()
        if not self._waiters:  # the common case: nobody queued, claim without a ticket
            claim = self._claim(key, spec)
            if claim is not None:
                return await self._prepare(claim)
        # Strict FIFO (OpenWhisk's runBuffer): only the head of the queue may claim a runtime.
        ticket = asyncio.Event()
        self._waiters.append(ticket)
        try:
            while True:
                self._check_open()
                claim = self._claim(key, spec) if self._waiters[0] is ticket else None
                if claim is not None:
                    break
                ticket.clear()
                await ticket.wait()
        finally:
            self._waiters.remove(ticket)
            self._wake_head()
        return await self._prepare(claim)

    def _claim(self, key: WarmKey, spec: RuntimeSpec) -> _Claim | None:
        """Decide synchronously: warm runtime, else stem cell or cold start within the budget
        (evicting LRU idle runtimes if that makes room), else None (wait)."""
        warm = [s for s in self._slots if s.key == key and s.state in (SlotState.IDLE, SlotState.PAUSED)]
        if warm:
            slot = max(warm, key=lambda s: (s.state is SlotState.IDLE, s.last_used_s))
            resume = slot.state is SlotState.PAUSED
            slot.state, slot.last_used_s = SlotState.BUSY, self._clock.monotonic_s()
            metrics.runtime_claimed("warm")
            return _Claim(slot, resume=resume)
        evicted = self._evict_for(spec.memory_mb)
        if evicted is None:
            return None
        stem = next((s for s in self._slots if s.state is SlotState.PREWARM and s.spec.kind == spec.kind
                     and s.spec.memory_mb == spec.memory_mb and s.spec.network == spec.network
                     and spec.image is None), None)
        if stem is not None:
            stem.state, stem.key, stem.last_used_s = SlotState.BUSY, key, self._clock.monotonic_s()
            self._refill_needed.set()
            metrics.runtime_claimed("prewarm")
            return _Claim(stem, evicted=evicted)
        slot = _Slot(spec, SlotState.STARTING, key, self._clock.monotonic_s())
        self._slots.append(slot)
        metrics.runtime_claimed("cold")
        return _Claim(slot, evicted=evicted)

    def _evict_for(self, memory_mb: int) -> list[_Slot] | None:
        """The LRU idle runtimes to remove so `memory_mb` fits (taken out of the pool now), or
        None when even evicting every idle runtime would not make room."""
        free_mb = self._config.memory_budget_mb - self._memory_used_mb()
        if memory_mb <= free_mb:
            return []
        idle = sorted((s for s in self._slots if s.key is not None and s.state in (SlotState.IDLE, SlotState.PAUSED)),
                      key=lambda s: s.last_used_s)
        victims: list[_Slot] = []
        for slot in idle:
            if memory_mb <= free_mb:
                break
            victims.append(slot)
            free_mb += slot.spec.memory_mb
        if memory_mb > free_mb:
            return None
        for slot in victims:
            self._slots.remove(slot)
        return victims

    async def _prepare(self, claim: _Claim) -> _Slot:
        slot = claim.slot
        try:
            if claim.evicted:
                async with asyncio.TaskGroup() as tg:
                    for victim in claim.evicted:
                        logger.info("evicting idle runtime of %s (%d MB) to make room", victim.key, victim.spec.memory_mb)
                        tg.create_task(self._destroy_runtime(victim))
            if slot.runtime is None:
                slot.runtime = await self._factory.create(slot.spec)
                slot.state = SlotState.BUSY
                self._check_open()
            elif claim.resume:
                await slot.runtime.resume()
        except BaseException as exc:
            await self._remove(slot)
            if isinstance(exc, Exception) and not isinstance(exc, ActionRuntimeError):
                raise ActionRuntimeError(f"cannot start a {slot.spec.kind} runtime: {exc!r}") from exc
            raise
        return slot

    def _release(self, slot: _Slot) -> None:
        if slot in self._slots:
            slot.state, slot.last_used_s = SlotState.IDLE, self._clock.monotonic_s()
        self._wake_head()

    async def _remove(self, slot: _Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        await self._destroy_runtime(slot)
        self._wake_head()

    # ------------------------------------------------------------------ helpers

    async def _destroy_runtime(self, slot: _Slot) -> None:
        runtime, slot.runtime = slot.runtime, None
        if runtime is None:
            return
        try:
            await runtime.destroy()
        except Exception:  # a runtime that cannot be destroyed must not break the pool
            logger.exception("destroying a %s runtime failed", slot.spec.kind)

    async def _pause(self, slot: _Slot) -> None:
        try:
            if slot.runtime is not None:
                await slot.runtime.pause()
        except Exception:
            logger.exception("pausing a %s runtime failed; removing it", slot.spec.kind)
            await self._remove(slot)
            return
        if slot.state is SlotState.PAUSING:
            slot.state = SlotState.PAUSED
        self._wake_head()

    async def _start_prewarm(self, spec: RuntimeSpec) -> None:
        slot = _Slot(spec, SlotState.STARTING, None, self._clock.monotonic_s())
        self._slots.append(slot)
        try:
            slot.runtime = await self._factory.create(spec)
        except Exception as exc:  # retried on the next reap; the pool still works without stem cells
            logger.warning("cannot start a %s stem cell: %s", spec.kind, exc)
            self._slots.remove(slot)
            return
        if self._closed or slot not in self._slots:
            await self._destroy_runtime(slot)
            return
        slot.state = SlotState.PREWARM
        self._wake_head()

    def _count_prewarm(self, prewarm: PrewarmConfig) -> int:
        return sum(1 for s in self._slots if s.key is None and s.spec.kind == prewarm.kind
                   and s.spec.memory_mb == prewarm.memory_mb)

    def _memory_used_mb(self) -> int:
        return sum(s.spec.memory_mb for s in self._slots if s.key is not None)

    def _wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].set()

    def _check_open(self) -> None:
        if self._closed:
            raise ActionRuntimeError("the container pool is closed; the invoker is shutting down")
