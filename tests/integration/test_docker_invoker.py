"""The container pool and ActionInvoker on real Docker containers (issue: Docker invoker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import docker
import pytest

from tests.plugins.clock import TestClock
from tests.plugins.invoker import make_action, make_invocation
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.docker import DockerRuntimeFactory
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.model import Activation, StatusCode, annotation

pytestmark = pytest.mark.docker

HOSTNAME = "import socket\ndef main(args):\n    return {'host': socket.gethostname()}\n"
HOG = ("def main(args):\n    blocks = []\n    while True:\n        blocks.append(bytearray(16 * 1024 * 1024))\n"
       "        blocks[-1][::4096] = b'x' * len(blocks[-1][::4096])\n")
SLEEPY = "import time\ndef main(args):\n    time.sleep(args.get('s', 5))\n    return {}\n"


@pytest.fixture
def clock() -> TestClock:
    return TestClock(monotonic_s=1000.0)


@pytest.fixture
async def setup(make_docker_factory: Callable[..., DockerRuntimeFactory], clock: TestClock,
                request: pytest.FixtureRequest) -> AsyncIterator[tuple[ActionInvoker, ContainerPool, DockerRuntimeFactory]]:
    factory = make_docker_factory(pull_images=False)
    prewarm = getattr(request, "param", 0)
    pool = ContainerPool(factory, PoolConfig(prewarm_count=prewarm, prewarm_kinds=("python:3.11",),
                                             pause_grace_s=10, idle_timeout_s=600), clock=clock)
    await pool.start()
    try:
        yield ActionInvoker(pool), pool, factory
    finally:
        await pool.close()


def containers_of(factory: DockerRuntimeFactory) -> set[str]:
    client = docker.from_env()
    try:
        return {c.id for c in client.containers.list(all=True, filters={"label": f"triggerhub.hub={factory.hub_id}"})}
    finally:
        client.close()


def cold(record: Activation) -> bool:
    return annotation(record.annotations, "initTime") is not None


async def test_memory_hog_is_aborted(setup: Any) -> None:
    invoker, _, _ = setup
    record = await invoker.invoke(make_invocation(make_action("python:3.11", HOG, memory_mb=128, timeout_ms=30_000)))
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    assert record.response.result == {"error": "The action exhausted its memory and was aborted."}


async def test_timeout_destroys_the_container_and_the_next_invoke_is_cold(setup: Any) -> None:
    invoker, _, _ = setup
    action = make_action("python:3.11", SLEEPY, timeout_ms=1000)
    record = await invoker.invoke(make_invocation(action, {"s": 5}))
    assert record.response.result == {"error": "The action exceeded its time limits of 1000 milliseconds."}
    assert annotation(record.annotations, "timeout") is True
    again = await invoker.invoke(make_invocation(action, {"s": 0}))
    assert again.response.status_code is StatusCode.SUCCESS and cold(again)


async def test_warm_reuse_stays_within_one_namespace(setup: Any) -> None:
    invoker, _, _ = setup
    action = make_action("python:3.11", HOSTNAME)
    first = await invoker.invoke(make_invocation(action, namespace="guest"))
    warm = await invoker.invoke(make_invocation(action, namespace="guest"))
    other = await invoker.invoke(make_invocation(action, namespace="alice"))
    assert cold(first) and not cold(warm) and cold(other)
    assert warm.response.result == first.response.result
    assert other.response.result != first.response.result


async def test_paused_container_is_resumed(setup: Any, clock: TestClock) -> None:
    invoker, pool, _ = setup
    action = make_action("python:3.11", HOSTNAME)
    first = await invoker.invoke(make_invocation(action))
    clock.jump(11)  # past the pause grace
    await pool.reap()
    assert pool.statistics().paused == 1
    again = await invoker.invoke(make_invocation(action))
    assert again.response.result == first.response.result and not cold(again)
    assert pool.statistics().paused == 0


@pytest.mark.parametrize("setup", [1], indirect=True)
async def test_prewarmed_container_takes_the_first_invoke(setup: Any) -> None:
    invoker, pool, factory = setup
    assert pool.statistics().prewarm == 1
    before = containers_of(factory)
    record = await invoker.invoke(make_invocation(make_action("python:3.11", HOSTNAME, name="fresh")))
    assert record.response.status_code is StatusCode.SUCCESS
    assert cold(record)  # /init ran, in the stem cell
    assert record.response.result["host"] in {c[:12] for c in before}  # no container created on the critical path
