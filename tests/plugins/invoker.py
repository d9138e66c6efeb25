"""Fixtures for the invoker: a RuntimeFactory (process today, in its bubblewrap sandbox;
parametrizable over Docker), a pool on it, an ActionInvoker, and builders for actions and
invocations."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from triggerhub.config import RuntimeConfig
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import RuntimeFactory
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.invoker.sandbox import Sandbox, find_sandbox
from triggerhub.model import (JSON, Action, ActionLimits, Exec, Invocation, Parameter, new_activation_id,
                              now_ms)

KINDS = ("python:3.11", "nodejs:20")


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """The bubblewrap sandbox as `triggerhub up` finds it (bubblewrap is installed by scripts/test)."""
    found = find_sandbox(RuntimeConfig())
    assert found is not None
    return found


@pytest.fixture
def runtimes_root() -> Iterator[str]:
    """A short temporary folder the sandbox user can pass through (pytest's own folders are 0700)."""
    root = tempfile.mkdtemp(prefix="th-rt-")
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def runtime_factory(runtimes_root: str, sandbox: Sandbox) -> AsyncIterator[RuntimeFactory]:
    """The RuntimeFactory under test. To run the same tests on Docker, parametrize this fixture."""
    factory = ProcessRuntimeFactory(temp_root=runtimes_root, log_grace_ms=500, sandbox=sandbox)
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
