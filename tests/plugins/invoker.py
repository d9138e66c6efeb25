"""Fixtures for the invoker: a RuntimeFactory (process today, parametrizable over Docker), a pool
on it, an ActionInvoker, and builders for actions and invocations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import RuntimeFactory
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.model import (JSON, Action, ActionLimits, Exec, Invocation, Parameter, new_activation_id,
                              now_ms)

KINDS = ("python:3.11", "nodejs:20")


@pytest.fixture
async def runtime_factory(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RuntimeFactory]:
    """The RuntimeFactory under test. To run the same tests on Docker, parametrize this fixture."""
    factory = ProcessRuntimeFactory(temp_root=str(tmp_path_factory.mktemp("runtimes")), log_grace_ms=500)
    yield factory
    await factory.cleanup_orphans()


@pytest.fixture
async def pool(runtime_factory: RuntimeFactory) -> AsyncIterator[ContainerPool]:
    container_pool = ContainerPool(runtime_factory, PoolConfig())
    yield container_pool
    await container_pool.close()


@pytest.fixture
def invoker(pool: ContainerPool) -> ActionInvoker:
    return ActionInvoker(pool)


def make_action(kind: str, code: str, *, name: str = "hello", main: str | None = None, binary: bool = False,
                timeout_ms: int = 60_000, logs_mb: int = 10, memory_mb: int = 256,
                parameters: tuple[Parameter, ...] = (), annotations: tuple[Parameter, ...] = (),
                namespace: str = "guest", revision: int = 1) -> Action:
    return Action(namespace, name, Exec(kind, code, binary=binary, main=main), parameters=parameters,
                  annotations=annotations, revision=revision,
                  limits=ActionLimits(timeout_ms=timeout_ms, memory_mb=memory_mb, logs_mb=logs_mb))


def make_invocation(action: Action, args: JSON = None, *, namespace: str = "guest", **fields: Any) -> Invocation:
    return Invocation(activation_id=fields.pop("activation_id", new_activation_id()), action=action,
                      args={} if args is None else args, namespace=namespace, subject=fields.pop("subject", namespace),
                      accepted_ms=fields.pop("accepted_ms", now_ms()), **fields)
