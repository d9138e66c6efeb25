"""ContainerPool rules, with a fake RuntimeFactory at the seam and an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.plugins.clock import TestClock
from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.base import ProxyResponse, RuntimeSpec
from triggerhub.invoker.pool import NETWORK_ANNOTATION, ContainerPool, PoolConfig, PoolStatistics
from triggerhub.model import JSON, Action, ActionLimits, Exec, Parameter


class FakeRuntime:
    def __init__(self, spec: RuntimeSpec, number: int) -> None:
        self.spec = spec
        self.number = number
        self.events: list[str] = []

    async def init(self, value: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        return ProxyResponse(200, {"ok": True})

    async def run(self, body: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        return ProxyResponse(200, {})

    async def logs(self, limit_bytes: int) -> list[str]:
        return []

    async def pause(self) -> None:
        self.events.append("pause")

    async def resume(self) -> None:
        self.events.append("resume")

    async def destroy(self) -> None:
        self.events.append("destroy")


class FakeFactory:
    def __init__(self, fail: bool = False) -> None:
        self.created: list[FakeRuntime] = []
        self.fail = fail

    async def create(self, spec: RuntimeSpec) -> FakeRuntime:
        if self.fail:
            raise ActionRuntimeError(f"cannot start {spec.kind}")
        runtime = FakeRuntime(spec, len(self.created))
        self.created.append(runtime)
        return runtime

    async def cleanup_orphans(self) -> int:
        return 0


def action(name: str = "a", memory_mb: int = 256, revision: int = 1, kind: str = "python:3.11") -> Action:
    return Action("guest", name, Exec(kind, "code"), revision=revision, limits=ActionLimits(memory_mb=memory_mb))


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


def make_pool(factory: FakeFactory, clock: TestClock, **config: object) -> ContainerPool:
    return ContainerPool(factory, PoolConfig(**config), clock=clock)  # type: ignore[arg-type] # **config


async def settle(condition: Callable[[], bool]) -> None:
    """Let other tasks run until `condition` holds (bounded; no waiting for time)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the pool did not reach the expected state")


async def use(pool: ContainerPool, namespace: str, act: Action) -> FakeRuntime:
    async with pool.lease(namespace, act) as lease:
        runtime = lease.runtime
    assert isinstance(runtime, FakeRuntime)
    return runtime


async def test_warm_runtime_is_reused_for_same_namespace_and_revision(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock)
    first = await use(pool, "guest", action())
    second = await use(pool, "guest", action())
    assert second is first
    assert len(factory.created) == 1
    await pool.close()


async def test_warm_runtime_is_never_shared_across_namespaces_or_revisions(factory: FakeFactory,
                                                                          clock: TestClock) -> None:
    pool = make_pool(factory, clock, memory_budget_mb=2048)
    base = action()
    runtimes = [await use(pool, "guest", base), await use(pool, "other", base),
                await use(pool, "guest", replace(base, revision=2)),
                await use(pool, "guest", replace(base, version="0.0.2")),
                await use(pool, "guest", replace(base, updated_ms=5)),
                await use(pool, "guest", action(name="b"))]
    assert [r.number for r in runtimes] == [0, 1, 2, 3, 4, 5]
    assert pool.statistics() == PoolStatistics(warm=6, prewarm=0, busy=0, paused=0, waiting=0, starting=0,
                                               memory_used_mb=1536, memory_budget_mb=2048)
    await pool.close()


async def test_lease_needs_init_only_on_first_use(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock)
    async with pool.lease("guest", action()) as lease:
        assert lease.needs_init is True
        lease.mark_initialized()
    async with pool.lease("guest", action()) as lease:
        assert lease.needs_init is False
    await pool.close()


async def test_one_activation_at_a_time_per_runtime(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock)
    async with pool.lease("guest", action()) as first, pool.lease("guest", action()) as second:
        assert first.runtime is not second.runtime
        assert pool.statistics().busy == 2
    assert pool.statistics().warm == 2
    await pool.close()


async def test_stem_cell_serves_first_invoke_and_is_refilled(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, prewarm_count=1, prewarm_kinds=("python:3.11",))
    await pool.start()
    assert pool.statistics().prewarm == 1
    stem = factory.created[0]
    async with pool.lease("guest", action()) as lease:
        assert lease.runtime is stem
        assert lease.needs_init is True
        assert pool.statistics().prewarm == 0
    await pool.reap(clock.monotonic_s())
    stats = pool.statistics()
    assert (stats.prewarm, stats.warm, len(factory.created)) == (1, 1, 2)
    await pool.close()


async def test_stem_cells_rest_when_nothing_ran_for_the_idle_timeout_and_return_with_the_next_lease(
        factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, prewarm_count=1, prewarm_kinds=("python:3.11",), idle_timeout_s=600.0)
    await pool.start()
    stem = factory.created[0]
    clock.jump(599.9)
    await pool.reap(clock.monotonic_s())
    assert (pool.statistics().prewarm, stem.events) == (1, [])
    clock.jump(0.1)  # 600 s without a lease
    await pool.reap(clock.monotonic_s())
    assert (pool.statistics().prewarm, stem.events) == (0, ["destroy"])
    clock.jump(3600)
    await pool.reap(clock.monotonic_s())  # still resting: no stem cell is started
    assert len(factory.created) == 1
    runtime = await use(pool, "guest", action())  # cold: no stem cell was waiting
    assert runtime.number == 1
    await pool.reap(clock.monotonic_s())
    stats = pool.statistics()
    assert (stats.prewarm, stats.warm, len(factory.created)) == (1, 1, 3)
    await pool.close()


async def test_stem_cells_of_a_kind_start_only_after_its_first_lease_when_not_prewarmed_at_start(
        factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, prewarm_count=1, prewarm_kinds=("python:3.11", "nodejs:20"),
                     prewarm_at_start=False, idle_timeout_s=600.0)
    await pool.start()
    await pool.reap(clock.monotonic_s())
    assert (pool.statistics().prewarm, len(factory.created)) == (0, 0)  # an idle pool holds no runtime
    first = await use(pool, "guest", action())  # a cold start: no python stem cell yet
    assert (first.number, first.spec.kind) == (0, "python:3.11")
    await pool.reap(clock.monotonic_s())
    assert [(r.number, r.spec.kind) for r in factory.created] == [(0, "python:3.11"), (1, "python:3.11")]
    second = await use(pool, "guest", action(name="b"))  # a new action of the same kind takes the stem cell
    assert second.number == 1
    clock.jump(600.0)  # nothing leased for the idle timeout: the pool rests and forgets the kinds used
    await pool.reap(clock.monotonic_s())
    assert pool.statistics() == PoolStatistics(warm=0, prewarm=0, busy=0, paused=0, waiting=0, starting=0,
                                               memory_used_mb=0, memory_budget_mb=1024)
    node = await use(pool, "guest", action(name="n", kind="nodejs:20"))
    await pool.reap(clock.monotonic_s())
    assert [r.spec.kind for r in factory.created[node.number:]] == ["nodejs:20", "nodejs:20"]  # no python stem
    assert pool.statistics().prewarm == 1
    await pool.close()


async def test_stem_cell_is_not_used_for_another_kind_or_memory(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, prewarm_count=1, prewarm_kinds=("python:3.11",))
    await pool.start()
    other_memory = await use(pool, "guest", action(memory_mb=512))
    other_kind = await use(pool, "guest", action(name="n", kind="nodejs:20"))
    assert (other_memory.number, other_kind.number) == (1, 2)
    assert pool.statistics().prewarm == 1
    await pool.close()


@pytest.mark.parametrize(("value", "network"), [(True, True), ("true", True), (False, False), ("yes", False)])
async def test_network_only_for_actions_annotated_sandbox_network(factory: FakeFactory, clock: TestClock,
                                                                  value: JSON, network: bool) -> None:
    pool = make_pool(factory, clock, prewarm_count=1, prewarm_kinds=("python:3.11",))
    await pool.start()  # the stem cell has no network
    annotated = replace(action(), annotations=(Parameter(NETWORK_ANNOTATION, value),))
    runtime = await use(pool, "guest", annotated)
    assert runtime.spec.network is network
    assert runtime.number == (1 if network else 0)  # a stem cell without network is not given to it
    plain = await use(pool, "guest", action(name="plain"))
    assert plain.spec.network is False
    await pool.close()


async def test_idle_runtime_is_paused_after_grace_and_resumed_on_reuse(factory: FakeFactory,
                                                                      clock: TestClock) -> None:
    pool = make_pool(factory, clock, pause_grace_s=10.0)
    runtime = await use(pool, "guest", action())
    clock.jump(9.9)
    await pool.reap(clock.monotonic_s())
    assert runtime.events == []
    clock.jump(0.1)  # 10.0 s
    await pool.reap(clock.monotonic_s())
    assert runtime.events == ["pause"]
    assert pool.statistics().paused == 1
    assert await use(pool, "guest", action()) is runtime
    assert runtime.events == ["pause", "resume"]
    await pool.close()


async def test_idle_runtime_is_removed_after_idle_timeout(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, pause_grace_s=10.0, idle_timeout_s=600.0)
    runtime = await use(pool, "guest", action())
    await pool.reap(10.0)
    await pool.reap(599.9)
    assert runtime.events == ["pause"]
    await pool.reap(600.0)
    assert runtime.events == ["pause", "destroy"]
    assert pool.statistics() == PoolStatistics(warm=0, prewarm=0, busy=0, paused=0, waiting=0, starting=0,
                                               memory_used_mb=0, memory_budget_mb=1024)
    await pool.close()


async def test_least_recently_used_idle_runtime_is_evicted_for_memory(factory: FakeFactory,
                                                                      clock: TestClock) -> None:
    pool = make_pool(factory, clock, memory_budget_mb=512)
    clock.jump(1.0)
    old = await use(pool, "guest", action("old"))
    clock.jump(1.0)  # 2.0 s
    recent = await use(pool, "guest", action("recent"))
    clock.jump(1.0)  # 3.0 s
    await use(pool, "guest", action("new"))
    assert old.events == ["destroy"]
    assert recent.events == []
    assert await use(pool, "guest", action("recent")) is recent
    assert pool.statistics().memory_used_mb == 512
    await pool.close()


async def test_waiters_are_served_in_fifo_order_when_the_pool_is_full(factory: FakeFactory,
                                                                      clock: TestClock) -> None:
    pool = make_pool(factory, clock, memory_budget_mb=256)
    order: list[str] = []
    release_b = asyncio.Event()

    async def invoke(name: str, hold: asyncio.Event | None = None) -> None:
        async with pool.lease("guest", action(name)):
            order.append(name)
            if hold is not None:
                await hold.wait()

    async with asyncio.TaskGroup() as tg:
        async with pool.lease("guest", action("a")):
            tg.create_task(invoke("b", release_b))
            await asyncio.sleep(0)
            tg.create_task(invoke("c"))
            await settle(lambda: pool.statistics().waiting == 2)
        await settle(lambda: order == ["b"])
        assert pool.statistics().waiting == 1
        release_b.set()
    assert order == ["b", "c"]
    assert [r.events for r in factory.created] == [["destroy"], ["destroy"], []]
    await pool.close()


async def test_warm_match_does_not_overtake_a_waiter(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, memory_budget_mb=512)
    order: list[str] = []
    await use(pool, "guest", action("warm"))

    async def invoke(name: str, memory_mb: int) -> None:
        async with pool.lease("guest", action(name, memory_mb=memory_mb)):
            order.append(name)

    async with asyncio.TaskGroup() as tg:
        async with pool.lease("guest", action("a")):
            tg.create_task(invoke("big", 512))
            await asyncio.sleep(0)
            tg.create_task(invoke("warm", 256))
            await asyncio.sleep(0)
            assert order == []
    assert order == ["big", "warm"]
    await pool.close()


async def test_failing_body_destroys_the_runtime(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock)
    with pytest.raises(RuntimeError, match="boom"):
        async with pool.lease("guest", action()):
            raise RuntimeError("boom")
    assert factory.created[0].events == ["destroy"]
    assert pool.statistics().memory_used_mb == 0
    await pool.close()


async def test_destroyed_lease_frees_memory_for_a_waiter(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, memory_budget_mb=256)
    async with asyncio.TaskGroup() as tg:
        async with pool.lease("guest", action("a")) as lease:
            waiter = tg.create_task(use(pool, "guest", action("b")))
            await asyncio.sleep(0)
            await lease.destroy()
        runtime = await waiter
    assert runtime.number == 1
    assert factory.created[0].events == ["destroy"]
    await pool.close()


async def test_action_larger_than_the_budget_is_refused(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, memory_budget_mb=256)
    with pytest.raises(ActionRuntimeError, match="action /guest/a needs 512 MB, more than the pool's whole budget"):
        await use(pool, "guest", action(memory_mb=512))
    await pool.close()


async def test_factory_failure_is_an_action_runtime_error_and_frees_memory(clock: TestClock) -> None:
    pool = make_pool(FakeFactory(fail=True), clock)
    with pytest.raises(ActionRuntimeError, match="cannot start python:3.11"):
        await use(pool, "guest", action())
    assert pool.statistics().memory_used_mb == 0
    await pool.close()


async def test_close_destroys_runtimes_and_fails_waiters(factory: FakeFactory, clock: TestClock) -> None:
    pool = make_pool(factory, clock, memory_budget_mb=256)
    idle = await use(pool, "guest", action("idle"))

    async def late() -> None:
        with pytest.raises(ActionRuntimeError, match="the container pool is closed"):
            await use(pool, "guest", action("late"))

    async with asyncio.TaskGroup() as tg:
        async with pool.lease("guest", action("busy")):
            tg.create_task(late())
            await settle(lambda: pool.statistics().waiting == 1)
            await pool.close()
    assert idle.events == ["destroy"]
    assert [r.events for r in factory.created] == [["destroy"], ["destroy"]]
