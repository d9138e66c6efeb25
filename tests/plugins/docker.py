"""Fixtures for tests that need a real dockerd and the runtime images.

The engine is started through scripts/services/dockerd.sh. When it (or the images) cannot be
had, tests fail under CI=true and are skipped with the reason locally.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.plugins.services import not_configured, service_missing, service_setting
from triggerhub.config import load_config
from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.docker import DockerRuntimeFactory
from triggerhub.invoker.images import build_runtime_images

REPO = Path(__file__).resolve().parents[2]
DOCKERD_SCRIPT = REPO / "scripts" / "services" / "dockerd.sh"


def _script(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(DOCKERD_SCRIPT), command], capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[docker.DockerClient]:
    """This checkout's Docker engine, with DOCKER_HOST pointing at it for the whole session.

    It is stopped at the end only if this session started it.
    """
    was_running = _script("status").returncode == 0
    started = _script("start")
    if started.returncode != 0:
        service_missing(f"dockerd could not be started: {started.stderr.strip() or started.stdout.strip()}")
    docker_host = service_setting("DOCKER_HOST")
    if docker_host is None:
        service_missing(not_configured("DOCKER_HOST", "dockerd.sh"))
    environment = pytest.MonkeyPatch()
    environment.setenv("DOCKER_HOST", str(docker_host))  # for from_env() here and in subprocesses
    client = docker.from_env()
    yield client
    client.close()
    environment.undo()
    if not was_running:
        _script("stop")


@pytest.fixture(scope="session")
def runtime_images(dockerd: docker.DockerClient) -> list[str]:
    """The runtime images, built (or found current) once per session."""
    try:
        return build_runtime_images(load_config().runtime)  # DOCKER_HOST set above, through config
    except ActionRuntimeError as exc:
        service_missing(f"the runtime images could not be built: {exc}")


@pytest.fixture
async def make_docker_factory(runtime_images: list[str], tmp_path_factory: pytest.TempPathFactory,
                              ) -> AsyncIterator[Callable[..., DockerRuntimeFactory]]:
    """Makes factories, each with a hub id of its own; their containers are removed afterwards."""
    made: list[DockerRuntimeFactory] = []

    def make(**options: Any) -> DockerRuntimeFactory:
        factory = DockerRuntimeFactory(hub_id=f"test{uuid.uuid4().hex[:8]}",
                                       socket_root=tmp_path_factory.mktemp("sockets"), **options)
        made.append(factory)
        return factory

    yield make
    for factory in made:
        sweeper = DockerRuntimeFactory(hub_id=factory.hub_id)  # sees the factory's containers as orphans
        await sweeper.cleanup_orphans()
        sweeper.close()
        factory.close()


@pytest.fixture
def docker_factory(make_docker_factory: Callable[..., DockerRuntimeFactory]) -> DockerRuntimeFactory:
    return make_docker_factory()
