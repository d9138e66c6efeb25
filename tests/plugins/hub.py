"""Fixtures that start a hub: in-process (`hub`) with the process runtime on an ephemeral port."""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from triggerhub.cli.compose import Hub, running_hub
from triggerhub.config import load_config

NOOP_JS = "function main(params) { return params; }"


@dataclass
class HubClient:
    """The running hub plus a tiny REST helper for tests."""

    hub: Hub
    session: aiohttp.ClientSession

    @property
    def apihost(self) -> str:
        return self.hub.apihost

    @property
    def auth(self) -> str:
        return self.hub.guest_auth

    def headers(self, auth: str | None = None) -> dict[str, str]:
        token = base64.b64encode((auth or self.auth).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def call(self, method: str, path: str, body: Any = None, *, auth: str | None = None,
                   raw: bytes | None = None, **query: Any) -> tuple[int, Any]:
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        payload = io.BytesIO(data) if data is not None else None  # large bodies without a warning
        headers = {**self.headers(auth), "Content-Type": "application/json"}
        async with self.session.request(method, f"{self.apihost}/api/v1/{path.lstrip('/')}", data=payload,
                                        params=params, headers=headers) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)


async def put_action(hub: HubClient, name: str, code: str = NOOP_JS, kind: str = "nodejs:default",
                     **extra: Any) -> Any:
    """PUT an action (`extra` joins the body; `overwrite=True` is a query flag) and return its body."""
    status, body = await hub.call("PUT", f"namespaces/_/actions/{name}", {"exec": {"kind": kind, "code": code}, **extra},
                                  overwrite=extra.pop("overwrite", False) if "overwrite" in extra else False)
    assert status == 200, body
    return body


def hub_config(home: Path, **env: str) -> Any:
    return load_config(env={"TRIGGERHUB_HOME": str(home), "TRIGGERHUB_PORT": "0",
                            "TRIGGERHUB_DEPLOY_EXAMPLES": "false", **env})


@pytest.fixture
def runtime_name() -> str:
    """How `hub` runs: embedded with the process or docker runtime, or the distributed deployment.
    tests/e2e parametrize it over all three."""
    return "process"


@pytest.fixture
def hub(runtime_name: str, request: pytest.FixtureRequest) -> HubClient:
    if runtime_name == "distributed":
        return request.getfixturevalue("distributed_hub")  # type: ignore[no-any-return]
    return request.getfixturevalue("embedded_hub")  # type: ignore[no-any-return]


@pytest.fixture
async def embedded_hub(tmp_path: Path, runtime_name: str, request: pytest.FixtureRequest) -> AsyncIterator[HubClient]:
    """The hub in this process; with the process runtime, its actions run in the bubblewrap sandbox."""
    from triggerhub.invoker.base import RuntimeFactory
    from triggerhub.invoker.process import ProcessRuntimeFactory

    factory: RuntimeFactory
    if runtime_name == "docker":
        from triggerhub.invoker.docker import DockerRuntimeFactory

        request.getfixturevalue("runtime_images")  # dockerd up and images built, once per session
        socket_root = Path(tempfile.mkdtemp(prefix="th-sock-"))  # short: Unix socket paths are limited
        factory = DockerRuntimeFactory(hub_id=f"e2e{uuid.uuid4().hex[:8]}", pull_images=False,
                                       socket_root=socket_root)
    else:
        factory = ProcessRuntimeFactory(sandbox=request.getfixturevalue("sandbox"))
    try:
        async with running_hub(hub_config(tmp_path / "home"), runtime=factory, runtime_name=runtime_name) as running:
            async with aiohttp.ClientSession() as session:
                yield HubClient(running, session)
    finally:
        if runtime_name == "docker":
            sweeper = DockerRuntimeFactory(hub_id=factory.hub_id)  # type: ignore[attr-defined]
            await sweeper.cleanup_orphans()
            sweeper.close()
            factory.close()  # type: ignore[attr-defined]
            shutil.rmtree(socket_root, ignore_errors=True)
